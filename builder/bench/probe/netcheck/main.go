// Command netcheck says what a container can reach, for the bench's moddownload suite: it
// waits (up to -wait) until -reach accepts a TCP connection, then tries each address of
// -unreachable once, and prints "GOBUILD-NET {json}": whether -reach answered, the outcome of
// each other address ("connected" or "refused" mean a route exists; "unreachable" and
// "timeout" mean none), and the container's routes other than its own subnet's (a default
// route would be one).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

func dial(addr string, timeout time.Duration) string {
	c, err := net.DialTimeout("tcp", addr, timeout)
	switch {
	case err == nil:
		c.Close()
		return "connected"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "unreachable"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "error: " + err.Error()
}

// gatewayRoutes lists the routes of /proc/net/route that go through a gateway (a default
// route among them); a container on an isolated network has only its subnet's own route.
func gatewayRoutes() []string {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return []string{"unreadable: " + err.Error()}
	}
	defer f.Close()
	out := []string{}
	s := bufio.NewScanner(f)
	s.Scan() // header
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 3 && fields[2] != "00000000" {
			out = append(out, fmt.Sprintf("%s dst %s gw %s", fields[0], fields[1], fields[2]))
		}
	}
	return out
}

func main() {
	reach := flag.String("reach", "", "host:port that must answer")
	others := flag.String("unreachable", "", "comma-separated host:port that must not")
	wait := flag.Duration("wait", 30*time.Second, "how long to wait for -reach")
	flag.Parse()
	out := map[string]any{"reach": *reach}
	deadline := time.Now().Add(*wait)
	result := ""
	for {
		result = dial(*reach, 2*time.Second)
		if result == "connected" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	out["reached"] = result == "connected"
	out["reach_result"] = result
	checks := map[string]string{}
	for _, addr := range strings.Split(*others, ",") {
		if addr = strings.TrimSpace(addr); addr != "" {
			checks[addr] = dial(addr, 2*time.Second)
		}
	}
	out["others"] = checks
	out["gateway_routes"] = gatewayRoutes()
	b, _ := json.Marshal(out)
	fmt.Println("GOBUILD-NET " + string(b))
}
