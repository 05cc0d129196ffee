//go:build !race

package worker

// raceSlowdown is 1 without the race detector: the bounds are measured as
// stated.
const raceSlowdown = 1
