package loglimit

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := &Limiter{Every: time.Second}
	now := time.Unix(1000, 0)
	if ok, n := l.Allow(now); !ok || n != 0 {
		t.Fatalf("first: %v %d", ok, n)
	}
	for range 5 {
		if ok, _ := l.Allow(now.Add(500 * time.Millisecond)); ok {
			t.Fatal("passed within the interval")
		}
	}
	if ok, n := l.Allow(now.Add(time.Second)); !ok || n != 5 {
		t.Fatalf("after the interval: %v, %d suppressed", ok, n)
	}
}
