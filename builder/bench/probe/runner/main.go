// Command runner runs one measured command inside a benchmark container and prints one line
// "GOBUILD-RESULT {json}": wall, user and sys time; the process peak (peak_rss_bytes: the
// largest resident peak of the command and every descendant it waited for, which the kernel
// hands back in wait4's ru_maxrss, so short-lived compile and link processes count; also the
// largest VmHWM seen by polling every process of the container); the cgroup's own figures
// under their own names (its peak usage, page cache included, and the largest anonymous
// memory seen by polling); the cgroup's OOM-kill counter before and after; and the host's
// 1-minute load average when the command started (load1_start).
//
// With -facts it prints "GOBUILD-FACTS {json}": the limits in force as the container's own
// cgroup shows them (v1 and v2), CPU model, governor, load average, kernel, memory.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func read(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readInt(path string) int64 {
	v, err := strconv.ParseInt(read(path), 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// cgroup2 reports whether /sys/fs/cgroup is the unified hierarchy.
func cgroup2() bool { return read("/sys/fs/cgroup/cgroup.controllers") != "" || exists("/sys/fs/cgroup/memory.max") }

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// keyed returns the value of "key N" lines in a flat-keyed cgroup file.
func keyed(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == key {
			v, _ := strconv.ParseInt(fields[1], 10, 64)
			return v
		}
	}
	return -1
}

// cgroupAnon is the cgroup's anonymous memory now (v2 anon, v1 total_rss).
func cgroupAnon() int64 {
	if cgroup2() {
		return keyed("/sys/fs/cgroup/memory.stat", "anon")
	}
	return keyed("/sys/fs/cgroup/memory/memory.stat", "total_rss")
}

// largestVmHWM is the largest VmHWM among the container's processes other than this one.
func largestVmHWM(self int) int64 {
	var best int64 = -1
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return best
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if v := vmHWM(pid); v > best {
			best = v
		}
	}
	return best
}

func memPeak() int64 {
	if cgroup2() {
		return readInt("/sys/fs/cgroup/memory.peak")
	}
	return readInt("/sys/fs/cgroup/memory/memory.max_usage_in_bytes")
}

func oomKills() int64 {
	if cgroup2() {
		return keyed("/sys/fs/cgroup/memory.events", "oom_kill")
	}
	return keyed("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")
}

func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb * 1024
		}
	}
	return -1
}

type result struct {
	Argv          []string `json:"argv"`
	ExitCode      int      `json:"exit_code"`
	Signal        string   `json:"signal,omitempty"`
	WallNS        int64    `json:"wall_ns"`
	UserNS        int64    `json:"user_ns"`
	SysNS         int64    `json:"sys_ns"`
	PeakRSSBytes  int64    `json:"peak_rss_bytes"`
	MaxRSSBytes   int64    `json:"maxrss_bytes"`
	VmHWMBytes    int64    `json:"vmhwm_bytes"`
	CgroupPeak    int64    `json:"cgroup_peak_bytes"`
	CgroupAnon    int64    `json:"cgroup_anon_peak_bytes"`
	OOMKillsDelta int64    `json:"oom_kills"`
	Load1Start    float64  `json:"load1_start"`
}

// tail keeps the last bytes written to it: a quiet command's output, shown if it fails.
type tail struct{ buf []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 4096; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

func run(argv []string, quiet bool) result {
	cmd := exec.Command(argv[0], argv[1:]...)
	said := &tail{}
	if quiet {
		cmd.Stdout, cmd.Stderr = said, said
	} else {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	oom0 := oomKills()
	load1 := load1()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "runner:", err)
		os.Exit(127)
	}
	// Poll while the command runs: VmHWM vanishes with a process, and the cgroup's anonymous
	// memory has no peak counter. The poller owns its maxima and hands them over on a channel
	// once the command has ended, so nothing is shared while it runs.
	type peaks struct{ hwm, anon int64 }
	done := make(chan struct{})
	handed := make(chan peaks)
	go func() {
		p := peaks{hwm: -1, anon: -1}
		sample := func() {
			p.hwm = max(p.hwm, largestVmHWM(os.Getpid()))
			p.anon = max(p.anon, cgroupAnon())
		}
		// Every 100 ms: the process peak comes from wait4 (exact), so polling only adds the
		// cgroup's anonymous peak and a cross-check, and its CPU counts against the quota.
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			sample()
			select {
			case <-done:
				handed <- p
				return
			case <-t.C:
			}
		}
	}()
	_ = cmd.Wait()
	wall := time.Since(start)
	close(done)
	p := <-handed
	r := result{Argv: argv, WallNS: wall.Nanoseconds(), VmHWMBytes: p.hwm, CgroupAnon: p.anon,
		CgroupPeak: memPeak(), Load1Start: load1}
	if oom1 := oomKills(); oom0 >= 0 && oom1 >= 0 {
		r.OOMKillsDelta = oom1 - oom0
	}
	st := cmd.ProcessState
	r.ExitCode = st.ExitCode()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		r.Signal = ws.Signal().String()
	}
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		r.UserNS = ru.Utime.Nano()
		r.SysNS = ru.Stime.Nano()
		r.MaxRSSBytes = ru.Maxrss * 1024
	}
	r.PeakRSSBytes = max(r.MaxRSSBytes, r.VmHWMBytes)
	if r.ExitCode != 0 {
		os.Stderr.Write(said.buf) // why it failed, even when quiet
	}
	return r
}

// load1 is the 1-minute load average: the host's, as /proc/loadavg is not per container.
func load1() float64 {
	fields := strings.Fields(read("/proc/loadavg"))
	if len(fields) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return -1
	}
	return v
}

func facts() map[string]any {
	f := map[string]any{}
	if cgroup2() {
		f["cgroup_version"] = 2
		f["cpu_max"] = read("/sys/fs/cgroup/cpu.max")
		f["memory_max"] = read("/sys/fs/cgroup/memory.max")
		f["cpuset"] = read("/sys/fs/cgroup/cpuset.cpus.effective")
		f["pids_max"] = read("/sys/fs/cgroup/pids.max")
		f["swap_max"] = read("/sys/fs/cgroup/memory.swap.max")
	} else {
		f["cgroup_version"] = 1
		f["cpu_quota_us"] = readInt("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
		f["cpu_period_us"] = readInt("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
		f["memory_limit"] = read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
		f["memsw_limit"] = read("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
		f["cpuset"] = read("/sys/fs/cgroup/cpuset/cpuset.effective_cpus")
		if f["cpuset"] == "" {
			f["cpuset"] = read("/sys/fs/cgroup/cpuset/cpuset.cpus")
		}
		f["pids_max"] = read("/sys/fs/cgroup/pids/pids.max")
	}
	f["kernel"] = read("/proc/sys/kernel/osrelease")
	f["loadavg"] = read("/proc/loadavg")
	f["governor"] = read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
	if cpu, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(cpu), "\n") {
			k, v, ok := strings.Cut(line, ":")
			k = strings.TrimSpace(k)
			if ok && (k == "model name" || k == "Model" || k == "CPU part") {
				if _, seen := f["cpu_model"]; !seen || k == "model name" {
					f["cpu_model"] = strings.TrimSpace(v)
				}
			}
		}
	}
	f["host_memory_kb"] = keyed("/proc/meminfo", "MemTotal:")
	f["host_swap_kb"] = keyed("/proc/meminfo", "SwapTotal:")
	f["nproc_online"] = read("/sys/devices/system/cpu/online")
	return f
}

func main() {
	showFacts := flag.Bool("facts", false, "print the container's limits and host facts")
	quiet := flag.Bool("quiet", false, "discard the command's output")
	flag.Parse()
	if *showFacts {
		b, _ := json.Marshal(facts())
		fmt.Println("GOBUILD-FACTS " + string(b))
		return
	}
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: runner [-quiet] command [args...]")
		os.Exit(2)
	}
	b, _ := json.Marshal(run(flag.Args(), *quiet))
	fmt.Println("GOBUILD-RESULT " + string(b))
}
