// Command modproxy serves a folder in the Go module proxy layout (<module>/@v/list, .info,
// .mod, .zip) over HTTP, for the bench's moddownload suite: `go mod download` with
// GOPROXY=http://<this container>:<port> on a network with no other route. It prints
// "GOBUILD-PROXY-READY <addr>" once it accepts connections, answers only GET and HEAD, and
// prints "GOBUILD-PROXY-ZIP <path>" for every .zip it is asked for with GET, so that the bench
// can count from its output what each measured download fetched through it.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

func main() {
	dir := flag.String("dir", "", "folder in the module proxy layout")
	addr := flag.String("addr", ":8080", "address to listen on")
	flag.Parse()
	if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
		fmt.Fprintf(os.Stderr, "modproxy: -dir %q is not a folder\n", *dir)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
	files := http.FileServer(http.Dir(*dir))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read-only module proxy", http.StatusMethodNotAllowed)
			return
		}
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, ".zip") {
			fmt.Println("GOBUILD-PROXY-ZIP", r.URL.Path)
		}
		files.ServeHTTP(w, r)
	})
	fmt.Println("GOBUILD-PROXY-READY", ln.Addr())
	if err := http.Serve(ln, handler); err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
}
