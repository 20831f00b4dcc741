// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// verifier bounds-checks a FlatBuffer from another process before the generated accessors touch
// it (R47): the Go FlatBuffers runtime has no verifier, and its accessors index without checks.
type verifier struct {
	b     []byte
	what  string // the message type, for the errors ("Frame", ...); may be empty
	err   error
	short bool // err is something reaching past the end of b
}

func (v *verifier) fail(why string) bool {
	if v.err == nil {
		if v.what != "" {
			v.err = errf(ErrDecode, "malformed %s: %s", v.what, why)
		} else {
			v.err = errf(ErrDecode, "%s", why)
		}
	}
	return false
}

// MaxHeader is the most bytes of a message a reader copies to decode its FlatBuffer: the table,
// its vectors and strings must lie within them (docs/protocol.md, "Reading a header from shared
// memory").
const MaxHeader = 4096

// firstCopy: the header bytes copied first; enough for a Frame with every field and three planes.
const firstCopy = 320

// outside fails: what reaches position at, past the header bytes.
func (v *verifier) outside(what string, at uint64) bool {
	limit := ""
	if len(v.b) == MaxHeader {
		limit = fmt.Sprintf(" (a reader copies at most %d header bytes)", MaxHeader)
	}
	v.short = v.err == nil
	return v.fail(fmt.Sprintf("%s reaches %d, outside the %d header bytes%s", what, at, len(v.b), limit))
}

// verifyMessage copies the header of msg into private memory and checks there its root table, of
// identifier ident, then whatever check checks of the table (at root); v.err says what is wrong,
// and the message is decoded from v.b. Each header byte of the slot is read once, so a peer
// rewriting the slot meanwhile cannot make a check and a later read disagree. The first firstCopy
// bytes are copied, and when the FlatBuffer reaches further, the bytes after them up to MaxHeader.
func verifyMessage(msg []byte, what, ident string, check func(v *verifier, root uint64)) *verifier {
	limit := min(len(msg), MaxHeader)
	hdr := append(make([]byte, 0, min(limit, firstCopy)), msg[:min(limit, firstCopy)]...)
	for {
		v := &verifier{b: hdr, what: what}
		if root, ok := v.root(ident); ok {
			check(v, root)
		}
		if v.err == nil || !v.short || len(hdr) == limit {
			return v
		}
		hdr = append(hdr, msg[len(hdr):limit]...)
	}
}

// fieldSpec: a scalar or inline struct field of a table, by id, and its bytes.
type fieldSpec struct {
	id   int
	size uint64
}

// fields checks that each present field of fs lies inside the table at pos.
func (v *verifier) fields(pos uint64, fs []fieldSpec) {
	for _, f := range fs {
		v.field(pos, f.id, f.size)
	}
}

func (v *verifier) u32(at uint64) uint32 { return binary.LittleEndian.Uint32(v.b[at:]) }

func (v *verifier) in(at, n uint64) bool {
	return at <= uint64(len(v.b)) && n <= uint64(len(v.b))-at
}

// root checks the root offset and the file identifier and returns the root table's position.
func (v *verifier) root(ident string) (uint64, bool) {
	if len(v.b) < 8 {
		return 0, v.fail(fmt.Sprintf("%d bytes is too short for a FlatBuffer", len(v.b)))
	}
	if string(v.b[4:8]) != ident {
		return 0, v.fail(fmt.Sprintf("file identifier %q, expected %q", v.b[4:8], ident))
	}
	return v.table(uint64(v.u32(0)))
}

// table checks the table at pos and its vtable.
func (v *verifier) table(pos uint64) (uint64, bool) {
	if pos%4 != 0 {
		return 0, v.fail(fmt.Sprintf("table at %d is misaligned", pos))
	}
	if !v.in(pos, 4) {
		return 0, v.outside("table", pos+4)
	}
	vt := int64(pos) - int64(int32(v.u32(pos)))
	if vt < 0 || vt%2 != 0 || !v.in(uint64(vt), 4) {
		return 0, v.fail(fmt.Sprintf("vtable of the table at %d is at %d, out of range", pos, vt))
	}
	vsize, tsize := uint64(binary.LittleEndian.Uint16(v.b[vt:])), uint64(binary.LittleEndian.Uint16(v.b[vt+2:]))
	if vsize < 4 || vsize%2 != 0 || tsize < 4 {
		return 0, v.fail(fmt.Sprintf("vtable at %d: size %d, table size %d", vt, vsize, tsize))
	}
	if !v.in(uint64(vt), vsize) || !v.in(pos, tsize) {
		return 0, v.outside("table", max(uint64(vt)+vsize, pos+tsize))
	}
	return pos, true
}

// field returns the absolute position of field id of the table at pos, 0 when absent; size bytes
// of it must lie in the table.
func (v *verifier) field(pos uint64, id int, size uint64) uint64 {
	if v.err != nil {
		return 0
	}
	vt := uint64(int64(pos) - int64(int32(v.u32(pos))))
	vsize, tsize := uint64(binary.LittleEndian.Uint16(v.b[vt:])), uint64(binary.LittleEndian.Uint16(v.b[vt+2:]))
	slot := 4 + 2*uint64(id)
	if slot+2 > vsize {
		return 0
	}
	off := uint64(binary.LittleEndian.Uint16(v.b[vt+slot:]))
	if off == 0 {
		return 0
	}
	if off < 4 || off+size > tsize {
		v.fail(fmt.Sprintf("field %d at offset %d outside its table of %d bytes", id, off, tsize))
		return 0
	}
	return pos + off
}

// ref follows the offset stored in field id (a table, vector or string); 0 when absent.
func (v *verifier) ref(pos uint64, id int) uint64 {
	at := v.field(pos, id, 4)
	if at == 0 {
		return 0
	}
	to := at + uint64(v.u32(at))
	if !v.in(to, 4) {
		v.outside(fmt.Sprintf("field %d's reference", id), to)
		return 0
	}
	return to
}

// vector checks a vector of n elements of elem bytes at field id; returns its length (0 absent).
func (v *verifier) vector(pos uint64, id int, elem, max uint64) uint64 {
	at := v.ref(pos, id)
	if at == 0 {
		return 0
	}
	n := uint64(v.u32(at))
	if n > max {
		v.fail(fmt.Sprintf("field %d has %d elements (at most %d)", id, n, max))
		return 0
	}
	if !v.in(at+4, n*elem) {
		v.outside(fmt.Sprintf("field %d's vector of %d", id, n), at+4+n*elem)
		return 0
	}
	return n
}

// str checks a string field (with its terminating zero).
func (v *verifier) str(pos uint64, id int) {
	at := v.ref(pos, id)
	if at != 0 {
		n := uint64(v.u32(at))
		if !v.in(at+4, n+1) {
			v.outside(fmt.Sprintf("field %d's string of %d bytes", id, n), at+5+n)
		}
	}
}

// text checks a string field that must be UTF-8 of at most max bytes.
func (v *verifier) text(pos uint64, id int, name string, max uint64) {
	v.str(pos, id)
	if at := v.ref(pos, id); at != 0 && v.err == nil {
		n := uint64(v.u32(at))
		if n > max || !utf8.Valid(v.b[at+4:at+4+n]) {
			v.fail(fmt.Sprintf("field %s: %d bytes, not UTF-8 of at most %d", name, n, max))
		}
	}
}

// sub checks a sub-table field and returns its position (0 absent).
func (v *verifier) sub(pos uint64, id int) uint64 {
	at := v.ref(pos, id)
	if at == 0 || v.err != nil {
		return 0
	}
	p, _ := v.table(at)
	return p
}

// tables checks a vector of tables and returns their positions.
func (v *verifier) tables(pos uint64, id int, max uint64) []uint64 {
	n := v.vector(pos, id, 4, max)
	at := v.ref(pos, id)
	out := make([]uint64, 0, n)
	for i := uint64(0); i < n && v.err == nil; i++ {
		e := at + 4 + 4*i
		p, ok := v.table(e + uint64(v.u32(e)))
		if ok {
			out = append(out, p)
		}
	}
	return out
}
