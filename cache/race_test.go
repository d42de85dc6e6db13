//go:build race

package cache

// raceEnabled: the race detector slows everything several times over.
const raceEnabled = true
