// SPDX-License-Identifier: MIT

// Package shmchan is a pure-Go peer of shmchan channels: zero-copy shared-memory rings that
// Python, C, C++ and Rust processes share. It is written from docs/protocol.md alone; comments
// cite its numbered rules (R1, R2, ...) and barrier letters (B, C, ...).
//
// A channel is the POSIX shared-memory object /dev/shm/shmchan.NAME (or a regular file) holding a
// 1024-byte header, a slot table and the slots. Create or Open one (Connect for a sealed channel
// served on a Unix socket), then attach a Writer (one per
// channel) or a Reader (SPSC: one per channel; BROADCAST: one per place, up to max_readers), or
// read a STATE board with Board. Every handle is an io.Closer; Close is idempotent.
//
// Memory: the package maps the object with mmap and accesses every shared field with sync/atomic
// (sequentially consistent, which is at least what each barrier of the protocol asks). Payload
// bytes are plain memory; the release fence M1 and the acquire fence M3 between them and the slot
// sequence rely on the store and load ordering of x86-64 (TSO), the only architecture shmchan
// supports, hence the linux && amd64 build constraint.
//
// Zero-copy views: Message.Data and Slot.Data are []byte views of the mapping, not copies. A
// message's view is valid until the message is released (Message.Release); a slot's until it is
// committed or aborted; every view until the Channel is closed, after which touching it faults.
// Copy what you keep (Reader.RecvBytes does).
package shmchan
