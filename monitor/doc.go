// Package monitor shows a run: a live web page while it goes on (Serve),
// and a self-contained HTML report from its records (WriteReport).
//
// Both are one page (page/: HTML, CSS and a small script, embedded in the
// binary and inlined in the page, so nothing comes from the network) that renders
// one typed State. The live page follows the server's api/events, a
// stream of server-sent events; a report carries its State in the file.
//
// The monitor must not slow the run it watches. A Model takes the run's
// events (distributor.Event) with one short lock each, queued to be
// drawn in batches. A
// page's stream is one request for the whole run: once a second it
// builds a State holding only what the page lacks (the timeline bars and
// lanes after its last, the failures and warnings when they changed),
// and encodes it without reflection (encode.go). A page never holds
// every job: the timeline keeps at most maxEnded bars, merging
// neighbouring bars of a lane at a coarser resolution each time it
// overflows (failures keep their own bars while there are few), and
// running executions are drawn as they run.
//
// Safe by default: the server binds to loopback and answers only
// requests for a loopback host name; bound elsewhere, every request needs
// the random token in the URL it prints. It is read-only unless given a
// Stop func (--ui-control), and a stop needs a header that a cross-site
// form cannot send.
package monitor
