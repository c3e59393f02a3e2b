// Command echo is the kubernetes release's smoke-test image
// (kpaas.local/echo:1): an HTTP server on :8080 (or $PORT) answering every
// request with the pod's hostname, so a test sees which pod served it. It
// exits at once on SIGTERM (as a container's PID 1 nothing else would).
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	host, _ := os.Hostname()
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
		os.Exit(0)
	}()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, host)
	})
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
