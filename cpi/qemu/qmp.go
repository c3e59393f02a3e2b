package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmp is a QEMU Machine Protocol client on a VM's unix socket: one command
// at a time, events kept for waitEvent.
type qmp struct {
	conn   net.Conn
	r      *bufio.Reader
	events []qmpMsg
}

type qmpMsg struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	QMP   json.RawMessage `json:"QMP"`
}

// dialQMP connects and negotiates capabilities.
func dialQMP(ctx context.Context, sock string) (*qmp, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connecting to QMP at %s: %w", sock, err)
	}
	q := &qmp{conn: conn, r: bufio.NewReader(conn)}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if _, err := q.read(); err != nil { // greeting
		conn.Close()
		return nil, fmt.Errorf("reading the QMP greeting on %s: %w", sock, err)
	}
	if _, err := q.do("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) Close() error { return q.conn.Close() }

func (q *qmp) read() (*qmpMsg, error) {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var m qmpMsg
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("parsing QMP message %q: %w", line, err)
	}
	return &m, nil
}

// do runs one command and returns its result, keeping events that arrive meanwhile.
func (q *qmp) do(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		m, err := q.read()
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		switch {
		case m.Event != "":
			q.events = append(q.events, *m)
		case m.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		default:
			return m.Return, nil
		}
	}
}

// waitEvent waits for an event named name whose data satisfies match.
func (q *qmp) waitEvent(name string, match func(json.RawMessage) bool, timeout time.Duration) error {
	for i, e := range q.events {
		if e.Event == name && match(e.Data) {
			q.events = append(q.events[:i], q.events[i+1:]...)
			return nil
		}
	}
	_ = q.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		m, err := q.read()
		if err != nil {
			return fmt.Errorf("waiting for QMP event %s: %w", name, err)
		}
		if m.Event == name && match(m.Data) {
			return nil
		}
	}
}
