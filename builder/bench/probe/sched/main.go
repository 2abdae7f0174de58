// Command sched measures goroutine-creation latency: the time from a `go` statement to the
// first instruction of the new goroutine, one goroutine at a time (so that it measures
// creation and scheduling, not a queue of runnable goroutines), and prints P50/P95/P99/max.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"runtime"
	"sort"
	"time"
)

func main() {
	n := flag.Int("n", 20000, "goroutines to create")
	flag.Parse()
	lat := make([]int64, *n)
	started := make(chan int64)
	for i := 0; i < *n; i++ {
		start := time.Now()
		go func() { started <- time.Since(start).Nanoseconds() }()
		lat[i] = <-started
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	q := func(p float64) int64 { return lat[int(p*float64(len(lat)-1))] }
	out := map[string]any{
		"gomaxprocs": runtime.GOMAXPROCS(0), "n": *n,
		"p50_ns": q(0.50), "p95_ns": q(0.95), "p99_ns": q(0.99), "max_ns": lat[len(lat)-1],
	}
	b, _ := json.Marshal(out)
	fmt.Println("GOBUILD-SCHED " + string(b))
}
