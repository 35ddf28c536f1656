package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// chronik user create|delete|list: SASL/SCRAM users, through the admin
// HTTP listener of a broker (cmd_admin_users.go), so that the first user
// can be made while every Kafka listener requires SASL. Kafka clients may
// also manage users with AlterUserScramCredentials once they can log in.

func userCommand() *cli.Command {
	flags := func(extra ...cli.Flag) []cli.Flag {
		return append(append(adminHTTPFlags(),
			timeoutFlag(30*time.Second, "give up on the admin listener after this long")), extra...)
	}
	return commandGroup(&cli.Command{
		Name:  "user",
		Usage: "manage SASL/SCRAM users (credentials are stored salted and iterated in the metadata log, never the password)",
		Subcommands: []*cli.Command{
			adminCommand(&cli.Command{
				Name:      "create",
				Usage:     "create a user (or, with --update, set the password of an existing one); the password is read from standard input or a prompt",
				ArgsUsage: "NAME",
				Flags: flags(
					&cli.BoolFlag{Name: "password-stdin", Usage: "read the password from the first line of standard input"},
					&cli.StringFlag{Name: "password", Usage: "the password (visible in the process list and shell history: prefer --password-stdin)"},
					&cli.StringSliceFlag{Name: "mechanism", Value: cli.NewStringSlice("SCRAM-SHA-256", "SCRAM-SHA-512"),
						Usage: "SCRAM mechanisms to create credentials for (PLAIN logins use them too)"},
					&cli.IntFlag{Name: "iterations", Value: defaultUserIterations, Usage: "SCRAM iterations, 4096 to 16384"},
					&cli.BoolFlag{Name: "update", Usage: "set the password of an existing user instead"},
				),
				Action: withArgs("a user name", 1, 1, userCreate),
			}),
			adminCommand(&cli.Command{
				Name:      "delete",
				Usage:     "delete a user (every mechanism)",
				ArgsUsage: "NAME",
				Flags:     flags(),
				Action:    withArgs("a user name", 1, 1, userDelete),
			}),
			adminCommand(&cli.Command{
				Name:   "list",
				Usage:  "list the users, their mechanisms and iterations",
				Flags:  flags(formatFlag("table", "table", "json")),
				Action: withArgs("no arguments", 0, 0, userList),
			}),
		},
	})
}

// readPassword gets the password: --password (with a warning),
// --password-stdin, or a prompt on the terminal without echo.
func readPassword(c *cli.Context) (string, error) {
	if p := c.String("password"); c.IsSet("password") {
		fmt.Fprintln(c.App.ErrWriter, "warning: --password is visible to other users of this machine and in shell history; prefer --password-stdin")
		return p, nil
	}
	if f, ok := stdin.(*os.File); !c.Bool("password-stdin") && ok && isatty.IsTerminal(f.Fd()) {
		return promptPassword(c, f)
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", failErr("read the password from standard input: %v", err)
	}
	p := strings.TrimRight(line, "\r\n")
	if p == "" {
		return "", usageErr("empty password (give it on the first line of standard input, or use a terminal)")
	}
	return p, nil
}

// promptPassword asks twice on the terminal with echo off.
func promptPassword(c *cli.Context, f *os.File) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", failErr("terminal: %v", err)
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return "", failErr("terminal: %v", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	r := bufio.NewReader(f)
	ask := func(prompt string) string {
		fmt.Fprint(c.App.ErrWriter, prompt)
		line, _ := r.ReadString('\n')
		fmt.Fprintln(c.App.ErrWriter)
		return strings.TrimRight(line, "\r\n")
	}
	p := ask("Password: ")
	if p == "" {
		return "", usageErr("empty password")
	}
	if ask("Again: ") != p {
		return "", usageErr("the passwords differ")
	}
	return p, nil
}

func userCreate(c *cli.Context, args []string) error {
	password, err := readPassword(c)
	if err != nil {
		return err
	}
	body := userRequest{Username: args[0], Password: password, Mechanisms: c.StringSlice("mechanism"), Iterations: int32(c.Int("iterations"))}
	method, path, want := http.MethodPost, "/v1/security/users", http.StatusCreated
	if c.Bool("update") {
		method, path, want = http.MethodPut, "/v1/security/users/"+url.PathEscape(args[0]), http.StatusNoContent
	}
	if _, err := adminCall(c, method, path, body, want); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "user %s %s\n", args[0], map[bool]string{false: "created", true: "updated"}[c.Bool("update")])
	return nil
}

func userDelete(c *cli.Context, args []string) error {
	if _, err := adminCall(c, http.MethodDelete, "/v1/security/users/"+url.PathEscape(args[0]), nil, http.StatusNoContent); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "user %s deleted\n", args[0])
	return nil
}

func userList(c *cli.Context, _ []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	b, err := adminCall(c, http.MethodGet, "/v1/security/users", nil, http.StatusOK)
	if err != nil {
		return err
	}
	var users []UserInfo
	if err := json.Unmarshal(b, &users); err != nil {
		return failErr("list users: bad answer from %s: %v", c.String("admin-url"), err)
	}
	if format == "json" {
		return writeJSON(c.App.Writer, users)
	}
	tab := newTable(c.App.Writer, "USER", "MECHANISM", "ITERATIONS")
	for _, u := range users {
		for _, m := range u.Mechanisms {
			tab.row(u.Name, m.Mechanism, m.Iterations)
		}
	}
	return tab.flush()
}
