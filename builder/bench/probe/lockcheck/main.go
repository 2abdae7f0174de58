// Command lockcheck tries, from inside a benchmark container, each thing a locked-down
// container must not be able to do, and prints one line "GOBUILD-LOCKDOWN {json}" with what
// happened: reach another host over the network, write to /, use or raise a capability, and
// start more processes than the pids limit allows. An empty error means the attempt worked.
// Only the syscall package: no net, so that every preparation builds it in a moment.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// status returns the named fields of /proc/self/status (CapEff, NoNewPrivs, ...).
func status(keys ...string) map[string]string {
	out := map[string]string{}
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		for _, want := range keys {
			if ok && k == want {
				out[k] = strings.TrimSpace(v)
			}
		}
	}
	return out
}

// connect opens a TCP socket and connects it to 192.0.2.1:80 (TEST-NET-1, never routed).
func connect() (socketErr, connectErr string) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return err.Error(), ""
	}
	defer syscall.Close(fd)
	err = syscall.Connect(fd, &syscall.SockaddrInet4{Port: 80, Addr: [4]byte{192, 0, 2, 1}})
	return "", errText(err)
}

// fork starts up to n sleeping children and reports how many started before one failed.
func fork(n int) (int, string) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return 0, "no sleep program: " + err.Error()
	}
	var kids []*exec.Cmd
	defer func() {
		for _, k := range kids {
			k.Process.Kill()
			k.Wait()
		}
	}()
	for i := 0; i < n; i++ {
		k := exec.Command(sleep, "60")
		if err := k.Start(); err != nil {
			return len(kids), err.Error()
		}
		kids = append(kids, k)
	}
	return len(kids), ""
}

func openForWriting(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		f.Close()
	}
	return err
}

func main() {
	forks := flag.Int("fork", 0, "start up to this many processes (0: skip)")
	flag.Parse()
	ifaces, _ := os.ReadDir("/sys/class/net")
	var names []string
	for _, e := range ifaces {
		names = append(names, e.Name())
	}
	socketErr, connectErr := connect()
	writeRoot := os.WriteFile("/gobuild-lockcheck", []byte("x"), 0o644)
	writeTmp := os.WriteFile("/tmp/gobuild-lockcheck", []byte("x"), 0o644)
	// the bench volume: the measuring probe and the workload must be out of measured code's
	// reach. Opened for writing, never written: where it is allowed, nothing changes.
	writeProbe := openForWriting("/gobuild/bin/runner")
	writeWork := openForWriting("/gobuild/work/go.mod")
	caps := status("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")
	// chroot needs CAP_SYS_CHROOT, which Docker grants root by default; setuid(0) needs
	// CAP_SETUID (or a setuid binary, which no-new-privileges disarms).
	chroot := syscall.Chroot("/")
	setuid := syscall.Setuid(0)
	started, forkErr := 0, "skipped"
	if *forks > 0 {
		started, forkErr = fork(*forks)
	}
	line, _ := json.Marshal(map[string]any{
		"uid": os.Getuid(), "gid": os.Getgid(), "interfaces": names,
		"socket_error": socketErr, "connect_error": connectErr,
		"write_root_error": errText(writeRoot), "write_tmp_error": errText(writeTmp),
		"write_probe_error": errText(writeProbe), "write_work_error": errText(writeWork),
		"caps": caps, "chroot_error": errText(chroot), "setuid_error": errText(setuid),
		"fork_started": started, "fork_error": forkErr,
	})
	fmt.Println("GOBUILD-LOCKDOWN " + string(line))
}
