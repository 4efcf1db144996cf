package distributor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
)

// keyNode is the fold of a keyed reduce at one key: a number, or an
// object of further keys (never both).
type keyNode struct {
	num  *numAcc
	kids map[string]*keyNode
}

// keyed is one job's result object, parsed and checked before anything
// of it is folded, so that a result the reduce refuses changes nothing.
type keyed struct {
	x      *big.Rat // a number, or
	places int
	kids   map[string]*keyed // an object
}

// parseKeyed parses a JSON object whose leaves are numbers (or strings
// holding numbers); path names where it is, for errors.
func parseKeyed(v []byte, path string) (*keyed, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, fmt.Errorf("result%s is not a JSON object: %v", at(path), err)
	}
	k := &keyed{kids: make(map[string]*keyed, len(m))}
	for key, raw := range m {
		kp := path + "." + key
		if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '{' {
			child, err := parseKeyed(t, kp)
			if err != nil {
				return nil, err
			}
			k.kids[key] = child
			continue
		}
		x, places, err := parseNumber(raw)
		if err != nil {
			return nil, fmt.Errorf("result%s: %s is not a number", at(kp), truncate(string(raw), 80))
		}
		k.kids[key] = &keyed{x: x, places: places}
	}
	return k, nil
}

// at names a key path in a message: ` at key "a.b"`, or nothing at the top.
func at(path string) string {
	if path == "" {
		return ""
	}
	return fmt.Sprintf(" at key %q", strings.TrimPrefix(path, "."))
}

// fits reports whether k can be folded into n: no key is a number in
// one and an object in the other.
func (n *keyNode) fits(k *keyed, path string) error {
	for key, c := range k.kids {
		child := n.kids[key]
		if child == nil {
			continue
		}
		kp := path + "." + key
		switch {
		case c.kids == nil && child.kids != nil:
			return fmt.Errorf("result%s is a number, but earlier results hold an object there", at(kp))
		case c.kids != nil && child.num != nil:
			return fmt.Errorf("result%s is an object, but earlier results hold a number there", at(kp))
		case c.kids != nil:
			if err := child.fits(c, kp); err != nil {
				return err
			}
		}
	}
	return nil
}

// fold adds k into n (k fits).
func (n *keyNode) fold(op string, k *keyed) {
	if n.kids == nil {
		n.kids = map[string]*keyNode{}
	}
	for key, c := range k.kids {
		child := n.kids[key]
		if child == nil {
			child = &keyNode{}
			n.kids[key] = child
		}
		if c.kids != nil {
			child.fold(op, c)
			continue
		}
		if child.num == nil {
			child.num = &numAcc{}
		}
		child.num.fold(op, c.x, c.places)
	}
}

// write writes n as JSON, keys sorted, numbers exact.
func (n *keyNode) write(b *strings.Builder) {
	if n.num != nil {
		b.WriteString(n.num.String())
		return
	}
	keys := make([]string, 0, len(n.kids))
	for k := range n.kids {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeKey(b, k)
		b.WriteByte(':')
		n.kids[k].write(b)
	}
	b.WriteByte('}')
}

// writeKey writes k as a JSON string, without json.Marshal's escaping of
// <, > and &.
func writeKey(b *strings.Builder, k string) {
	var q bytes.Buffer
	enc := json.NewEncoder(&q)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(k)
	b.Write(bytes.TrimRight(q.Bytes(), "\n"))
}
