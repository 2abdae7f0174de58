// Command memstats allocates and touches a heap of the given size, then prints
// runtime.MemStats beside the cgroup's own memory counters and /proc/meminfo.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

func flat(path string) map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(strings.Replace(s.Text(), ":", "", 1))
		if len(fields) >= 2 {
			v, _ := strconv.ParseInt(fields[1], 10, 64)
			if len(fields) == 3 && fields[2] == "kB" {
				v *= 1024
			}
			out[fields[0]] = v
		}
	}
	return out
}

func one(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return v
}

var keep [][]byte

func main() {
	mb := flag.Int("mb", 128, "heap to allocate, MiB")
	flag.Parse()
	for i := 0; i < *mb; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i)
		}
		keep = append(keep, b)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out := map[string]any{
		"alloc_mib":  *mb,
		"heap_alloc": ms.HeapAlloc, "heap_sys": ms.HeapSys, "heap_inuse": ms.HeapInuse, "sys": ms.Sys,
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory.current"); err == nil {
		st := flat("/sys/fs/cgroup/memory.stat")
		out["cgroup_version"] = 2
		out["cgroup_usage"] = one("/sys/fs/cgroup/memory.current")
		out["cgroup_anon"], out["cgroup_file"] = st["anon"], st["file"]
	} else {
		st := flat("/sys/fs/cgroup/memory/memory.stat")
		out["cgroup_version"] = 1
		out["cgroup_usage"] = one("/sys/fs/cgroup/memory/memory.usage_in_bytes")
		out["cgroup_anon"], out["cgroup_file"] = st["total_rss"], st["total_cache"]
	}
	mi := flat("/proc/meminfo")
	out["meminfo_total"], out["meminfo_available"] = mi["MemTotal"], mi["MemAvailable"]
	self := flat("/proc/self/status")
	out["vmrss"] = self["VmRSS"]
	b, _ := json.Marshal(out)
	fmt.Println("GOBUILD-MEMSTATS " + string(b))
	runtime.KeepAlive(keep)
}
