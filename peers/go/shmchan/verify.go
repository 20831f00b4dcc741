// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import "encoding/binary"

// verifier bounds-checks a FlatBuffer from another process before the generated accessors touch
// it (R47): the Go FlatBuffers runtime has no verifier, and its accessors index without checks.
type verifier struct {
	b   []byte
	err error
}

func (v *verifier) fail(what string) bool {
	if v.err == nil {
		v.err = errf(ErrDecode, "%s", what)
	}
	return false
}

func (v *verifier) u32(at uint64) uint32 { return binary.LittleEndian.Uint32(v.b[at:]) }

func (v *verifier) in(at, n uint64) bool {
	return at <= uint64(len(v.b)) && n <= uint64(len(v.b))-at
}

// root checks the root offset and the file identifier and returns the root table's position.
func (v *verifier) root(ident string) (uint64, bool) {
	if len(v.b) < 8 || string(v.b[4:8]) != ident {
		return 0, v.fail("not a " + ident + " FlatBuffer (identifier)")
	}
	return v.table(uint64(v.u32(0)))
}

// table checks the table at pos and its vtable.
func (v *verifier) table(pos uint64) (uint64, bool) {
	if pos%4 != 0 || !v.in(pos, 4) {
		return 0, v.fail("table out of range")
	}
	vt := int64(pos) - int64(int32(v.u32(pos)))
	if vt < 0 || vt%2 != 0 || !v.in(uint64(vt), 4) {
		return 0, v.fail("vtable out of range")
	}
	vsize, tsize := uint64(binary.LittleEndian.Uint16(v.b[vt:])), uint64(binary.LittleEndian.Uint16(v.b[vt+2:]))
	if vsize < 4 || vsize%2 != 0 || !v.in(uint64(vt), vsize) || !v.in(pos, tsize) {
		return 0, v.fail("vtable or table size out of range")
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
	if off+size > tsize {
		v.fail("field out of its table")
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
		v.fail("reference out of range")
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
	if n > max || !v.in(at+4, n*elem) {
		v.fail("vector out of range")
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
			v.fail("string out of range")
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
