// Package agent is dsub's agent mode: one long-lived `dsub agent` per
// host, started over one SSH session, that runs a run's jobs as local
// processes and speaks a framed, versioned protocol with the master over
// that session's stdin and stdout. mitogen is the model: nothing is
// installed on the host (the agent is the dsub binary itself, shipped
// through the content-addressed cache), one connection per host, and
// messages routed by handle.
//
// The wire format is a stream of frames:
//
//	uint32 length (big endian) of what follows: 1 + 4 + len(payload)
//	uint8  type
//	uint32 handle: the job a frame concerns (0: the connection)
//	payload
//
// The first frame each way is Hello, carrying the protocol version; a
// mismatch is an error that names both versions, and the master then
// runs the host in session mode. The master sends Start, Stdin, StdinEOF,
// Kill and Ping; the agent sends Started, StdinAck (a Stdin frame
// written to the job, freeing a place in the master's window), Stdout,
// Stderr, Exit and Ping.
// Either side that hears nothing for its keepalive window considers the
// other gone. The agent's heartbeats carry the host's load and memory
// (HealthMsg), for the master's host table. The agent never outlives its
// master: on EOF, or with no frame for the window, it kills every job's
// process group and exits.
//
// Invariants:
//   - a frame is at most MaxFrame bytes; a longer length is a protocol
//     error, never an allocation;
//   - every Start gets exactly one Exit (status -1 and an error when the
//     process could not start), after all of its Stdout and Stderr frames;
//   - handles are chosen by the master and never reused on a connection.
package agent

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Version is the protocol version. Master and agent must agree.
// 2: the agent's Ping frames carry a HealthMsg.
// 3: a job's stdin flows in a window of stdinWindow frames, each
// acknowledged (TStdinAck) once written to the job's pipe, so that a job
// that reads none holds up only itself.
const Version = 3

// MaxFrame bounds a frame's length field.
const MaxFrame = 1 << 20

// chunk is the largest output payload the agent sends in one frame.
const chunk = 32 << 10

// stdinWindow is how many stdin frames of a job the master may have sent
// and the agent not yet written to the job's pipe: the agent holds them
// (at most stdinWindow × chunk bytes, 1 MiB, a job), and its frame loop
// never waits on a job's stdin. 1 MiB in flight keeps a job's stdin at
// 20 MB/s over a 50 ms round trip (OpenSSH's channel window is 2 MiB).
const stdinWindow = 32

// Type is a frame's type.
type Type uint8

const (
	THello    Type = iota + 1 // both ways, first: HelloMsg
	TStart                    // master: StartMsg
	TStarted                  // agent: the process group id (uint32)
	TStdin                    // master: bytes for the job's stdin
	TStdinEOF                 // master: close the job's stdin
	TStdout                   // agent: bytes the job wrote
	TStderr                   // agent
	TKill                     // master: TERM the job's group, KILL 2 s later
	TExit                     // agent: ExitMsg
	TPing                     // both ways: heartbeat; the agent's carries a HealthMsg (or nothing)
	TStdinAck                 // agent: one stdin frame of the job was written to its pipe (or dropped: the job ended)
)

func (t Type) String() string {
	names := [...]string{"?", "hello", "start", "started", "stdin", "stdin-eof", "stdout", "stderr", "kill", "exit", "ping", "stdin-ack"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("type %d", t)
}

// Frame is one message.
type Frame struct {
	Type    Type
	Handle  uint32
	Payload []byte
}

// HelloMsg opens a connection.
type HelloMsg struct {
	Version int    `json:"version"`
	Program string `json:"program"` // "dsub"
	PID     int    `json:"pid,omitempty"`
}

// StartMsg starts a job. Exactly one of Argv and Shell is set.
type StartMsg struct {
	Argv  []string          `json:"argv,omitempty"`
	Shell string            `json:"shell,omitempty"` // run with the login shell ($SHELL, else /bin/sh) -c
	Env   map[string]string `json:"env,omitempty"`   // added to the agent's environment
	Dir   string            `json:"dir,omitempty"`
	Stdin bool              `json:"stdin,omitempty"` // Stdin frames follow; else stdin is /dev/null
}

// HealthMsg is the host's load and memory, in the agent's heartbeats
// (where it can read them: Linux's /proc).
type HealthMsg struct {
	Load1      float64 `json:"load1"`
	MemAvailKB int64   `json:"mem_avail_kb"`
	MemTotalKB int64   `json:"mem_total_kb"`
}

// ExitMsg ends a job.
type ExitMsg struct {
	Status int    `json:"status"`           // exit status; -1 when killed by a signal or not started
	Signal string `json:"signal,omitempty"` // without "SIG"
	Error  string `json:"error,omitempty"`  // why it could not start
	// NotStarted: killed while it waited for a slot; it never ran.
	NotStarted bool `json:"not_started,omitempty"`
	// Abandoned: the agent killed it as it shut down, its master gone
	// (silent, or its session ended): the host's failure, not the job's.
	// Such an exit reaches a master only if the connection comes back.
	Abandoned bool `json:"abandoned,omitempty"`
	// Runtime is how long the process ran, from its start to its exit
	// (its output forwarded), by the agent's clock: the master's would
	// count the frames' delays.
	Runtime float64 `json:"runtime_s,omitempty"`
	User    float64 `json:"user_s"` // CPU seconds, from wait4
	Sys     float64 `json:"sys_s"`
	MaxRSS  int64   `json:"max_rss_kb"`
}

// ErrFrameTooLong is a length field beyond MaxFrame.
var ErrFrameTooLong = errors.New("agent protocol: frame longer than MaxFrame")

// Reader decodes frames.
type Reader struct{ r *bufio.Reader }

func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

// Read returns the next frame. Its payload is a fresh slice.
func (r *Reader) Read() (Frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		return Frame{}, err // io.EOF between frames: a clean end
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return Frame{}, fmt.Errorf("%w: %d bytes", ErrFrameTooLong, n)
	}
	if n < 5 {
		return Frame{}, fmt.Errorf("agent protocol: frame of %d bytes is shorter than its header", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r.r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Frame{Type: Type(buf[0]), Handle: binary.BigEndian.Uint32(buf[1:5]), Payload: buf[5:]}, nil
}

// Writer encodes frames; it is safe for concurrent use, and each frame is
// written whole.
type Writer struct {
	mu sync.Mutex
	w  *bufio.Writer
	// delay, if set, is how long a frame may wait for others to share
	// its write (NewCoalescingWriter); armed: a flush is due.
	delay time.Duration
	armed bool
}

// Coalesce is how long an agent's or a master's frame waits for others
// to share its write.
const Coalesce = time.Millisecond

// NewWriter makes a Writer that flushes every frame as it is written.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 64<<10)} }

// NewCoalescingWriter makes a Writer whose frames wait up to delay for
// others to go with them: what happens within the delay (many jobs'
// starts, outputs and exits) is one write to the transport, one SSH
// packet and one wake-up at the other end, instead of one per frame. A
// write blocked by a peer that reads nothing blocks every frame after it,
// as with NewWriter.
func NewCoalescingWriter(w io.Writer, delay time.Duration) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 64<<10), delay: delay}
}

// Flush writes what frames wait.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Flush()
}

// flushDue is the coalescing writer's flush, when its delay is over.
func (w *Writer) flushDue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	_ = w.w.Flush() // an error sticks in w.w: the next Write returns it
}

// Write writes f, and flushes it (at once, or within the coalescing
// delay).
func (w *Writer) Write(f Frame) error {
	if len(f.Payload)+5 > MaxFrame {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLong, len(f.Payload)+5)
	}
	var hdr [9]byte
	binary.BigEndian.PutUint32(hdr[0:4], uint32(5+len(f.Payload)))
	hdr[4] = byte(f.Type)
	binary.BigEndian.PutUint32(hdr[5:9], f.Handle)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := w.w.Write(f.Payload); err != nil {
		return err
	}
	if w.delay <= 0 {
		return w.w.Flush()
	}
	if !w.armed {
		w.armed = true
		time.AfterFunc(w.delay, w.flushDue)
	}
	return nil
}

// WriteJSON writes a frame whose payload is v as JSON.
func (w *Writer) WriteJSON(t Type, handle uint32, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return w.Write(Frame{Type: t, Handle: handle, Payload: b})
}

// checkHello decodes a peer's Hello and checks its version.
func checkHello(f Frame, peer string) (HelloMsg, error) {
	var h HelloMsg
	if f.Type != THello {
		return h, fmt.Errorf("agent protocol: the %s's first frame is %s, not hello", peer, f.Type)
	}
	if err := json.Unmarshal(f.Payload, &h); err != nil {
		return h, fmt.Errorf("agent protocol: the %s's hello: %v", peer, err)
	}
	if h.Version != Version {
		return h, &VersionError{Ours: Version, Theirs: h.Version, Peer: peer}
	}
	return h, nil
}

// VersionError is a protocol version mismatch between master and agent.
type VersionError struct {
	Ours, Theirs int
	Peer         string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("agent protocol version mismatch: this dsub speaks %d, the %s %d", e.Ours, e.Peer, e.Theirs)
}
