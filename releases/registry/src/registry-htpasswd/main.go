// Command registry-htpasswd writes an htpasswd file with one bcrypt entry, as
// the Distribution registry's htpasswd auth reads it (no apache2-utils on a
// minbase stemcell). The password is read from stdin so it never shows in ps.
//
//	registry-htpasswd USER FILE < password
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: registry-htpasswd USER FILE < password")
		os.Exit(2)
	}
	user, file := os.Args[1], os.Args[2]
	pw, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && pw == "" {
		fmt.Fprintf(os.Stderr, "registry-htpasswd: reading the password from stdin: %v\n", err)
		os.Exit(1)
	}
	pw = strings.TrimRight(pw, "\r\n")
	if pw == "" || user == "" || strings.Contains(user, ":") {
		fmt.Fprintln(os.Stderr, "registry-htpasswd: the user must be non-empty without ':' and the password non-empty")
		os.Exit(1)
	}
	// Keep the file when the password still matches: no change on every start.
	if old, err := os.ReadFile(file); err == nil {
		if u, h, ok := strings.Cut(strings.TrimSpace(string(old)), ":"); ok && u == user && bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)) == nil {
			return
		}
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintf(os.Stderr, "registry-htpasswd: %v\n", err)
		os.Exit(1)
	}
	if err := os.WriteFile(file, []byte(user+":"+string(h)+"\n"), 0o640); err != nil {
		fmt.Fprintf(os.Stderr, "registry-htpasswd: %v\n", err)
		os.Exit(1)
	}
}
