package main

import (
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"
)

// serveInProcess runs `chronik serve` (args, args[0] "chronik") in this
// process until the test ends, when SIGTERM to the process stops it as
// systemd would (the exit code must be 0), waits until the admin listener
// at adminAddr answers /readyz with 200, and returns serve's stderr.
func serveInProcess(t *testing.T, args []string, adminAddr string) *syncBuffer {
	t.Helper()
	stderr := &syncBuffer{}
	exited := make(chan int, 1)
	go func() { exited <- run(args, &syncBuffer{}, stderr) }()
	t.Cleanup(func() {
		select {
		case code := <-exited:
			t.Errorf("serve exited early: %d\n%s", code, stderr.String())
			return
		default:
		}
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("serve exited %d\n%s", code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	for i := 0; ; i++ {
		if resp, err := http.Get("http://" + adminAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return stderr
			}
		}
		if i > 400 {
			t.Fatalf("not ready\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
