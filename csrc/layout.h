/* SPDX-License-Identifier: MIT */
/* The byte map of a channel segment: the single source of truth for every shared byte. */
#ifndef SHMCHAN_LAYOUT_H
#define SHMCHAN_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "shmchan.h"

/*
 * A segment is:  [ control block, 1024 bytes ][ length table ][ descriptor ][ pad ][ slot 0 ] ... [ slot N-1 ]
 *
 * All fields are fixed-width little-endian. The control block is split into 128-byte sections so
 * that the fields one side writes on every message never share a cache line (or the adjacent line
 * the prefetcher pairs with it) with the fields the other side writes:
 *
 *   0    identity   written once by the creator before `magic`; read-only afterwards
 *   128  writer     head position, its futex word, writer statistics      (written by the writer)
 *   256  reader     tail position, its futex word, reader statistics      (written by the reader)
 *   384  waiters    "I am about to sleep" flags, written only by a side that blocks
 *   512  peers      attach state, pid and generation of writer and reader (written at attach/detach)
 *   640  kind       identity of broadcast channels (max_readers, policy, reader table offset);
 *                   zero for the other kinds
 *   768  floor      broadcast writer: the scan sequence, the protected floor position, and the
 *                   position a waiting writer needs every reader to reach
 *   896  reserved   zero; later minor versions may define fields here
 *
 * Kinds (the `kind` field):
 *   SPSC       the length table holds one uint64 per slot.
 *   BROADCAST  the slot table holds {seq, len} per slot (seq = position + 1 once committed,
 *              SHMCHAN_SEQ_WRITING while the writer fills the slot), followed by a table of
 *              max_readers reader places of 128 bytes each. Reader place i is owned by whoever
 *              holds OFD lock byte SHMCHAN_LOCK_READERS + i.
 *   STATE      a board with two slots (capacity 2) and the same {seq, len} table; head is the
 *              version of the newest value, which lives in slot (version & 1).
 *
 * Positions are free-running 64-bit message counts; the slot of position p is p & (capacity - 1).
 * The ring holds head - tail messages; 0 <= head - tail <= capacity always holds for valid headers.
 */

#define SHMCHAN_MAGIC 0x314E4148434D4853ULL /* "SHMCHAN1" read as little-endian bytes */
#define SHMCHAN_LAYOUT_MAJOR 1
#define SHMCHAN_LAYOUT_MINOR 0 /* new kinds need no new version: builds that lack one refuse its `kind` */
/* kinds: SHMCHAN_KIND_SPSC, SHMCHAN_KIND_BROADCAST and SHMCHAN_KIND_STATE (public, in shmchan.h) */
#define SHMCHAN_MAX_READERS 1024u /* reader places of a broadcast channel */
#define SHMCHAN_READER_PLACE_SIZE 128u
#define SHMCHAN_SEQ_WRITING UINT64_MAX /* slot-table seq while the writer fills the slot */
#define SHMCHAN_STATE_SLOTS 2u

#define SHMCHAN_CONTROL_SIZE 1024u
#define SHMCHAN_LENS_OFFSET SHMCHAN_CONTROL_SIZE /* where layout 1.0 puts the length table */

/* flags: bits 0-1 hold the msync policy, bit 2 says the segment is a sealed memfd; every other bit
   must be zero in layout 1.x */
#define SHMCHAN_FLAG_MSYNC_MASK 0x3u
#define SHMCHAN_FLAG_SEALED 0x4u
#define SHMCHAN_FLAGS_KNOWN (SHMCHAN_FLAG_MSYNC_MASK | SHMCHAN_FLAG_SEALED)

/* peer states in writer_state / reader_state */
#define SHMCHAN_PEER_NONE 0u     /* never attached */
#define SHMCHAN_PEER_ATTACHED 1u /* attached (alive while its lock byte is held) */
#define SHMCHAN_PEER_CLOSED 2u   /* detached cleanly */

/* Byte offsets of the OFD lock bytes (advisory locks; they do not touch the data at those offsets). */
#define SHMCHAN_LOCK_ATTACH 0 /* read-locked by every open handle: "somebody uses this channel" */
#define SHMCHAN_LOCK_WRITER 1 /* write-locked by the one writer */
#define SHMCHAN_LOCK_READER 2 /* write-locked by the one reader */
#define SHMCHAN_LOCK_READERS 3 /* broadcast: byte 3 + i is write-locked by the owner of reader place i */
/* BROADCAST, STATE: read-locked by every reader counted in reader_waiting (while it is counted);
   whoever can write-lock it knows that no live sleeper is counted. Right after the last place. */
#define SHMCHAN_LOCK_SLEEPERS (SHMCHAN_LOCK_READERS + 1024)

struct shmchan_header {
	/* 0: identity */
	_Atomic uint64_t magic;
	_Atomic uint16_t version_major;
	_Atomic uint16_t version_minor;
	_Atomic uint32_t kind;
	_Atomic uint32_t flags;
	_Atomic uint32_t capacity;
	_Atomic uint64_t slot_size;
	_Atomic uint64_t slot_stride;
	_Atomic uint32_t slot_align;
	_Atomic uint32_t creator_pid;
	_Atomic uint64_t lens_offset;
	_Atomic uint64_t data_offset;
	_Atomic uint64_t total_size;
	_Atomic uint64_t created_ns;
	_Atomic uint64_t descriptor_offset; /* immutable descriptor bytes (a ChannelInfo FlatBuffer); 0: none */
	_Atomic uint64_t descriptor_size;
	uint8_t pad0[128 - 96];

	/* 128: writer-owned */
	_Atomic uint64_t head;
	_Atomic uint32_t head_wake; /* futex word: +1 after every commit and at writer close */
	uint32_t pad1a;
	_Atomic uint64_t w_messages;
	_Atomic uint64_t w_bytes;
	_Atomic uint64_t w_full; /* times reserve found the ring full and had to wait (or fail) */
	_Atomic uint64_t w_aborts;
	uint8_t pad1[128 - 48];

	/* 256: reader-owned */
	_Atomic uint64_t tail;
	_Atomic uint32_t tail_wake; /* futex word: +1 per release moving tail (broadcast: fetch_add, also at close) */
	uint32_t pad2a;
	_Atomic uint64_t r_messages;
	_Atomic uint64_t r_bytes;
	_Atomic uint64_t r_empty; /* times peek found the ring empty and had to wait (or fail) */
	uint8_t pad2[128 - 40];

	/* 384: waiters */
	_Atomic uint32_t reader_waiting;
	_Atomic uint32_t writer_waiting;
	uint8_t pad3[128 - 8];

	/* 512: peers */
	_Atomic uint32_t writer_state;
	_Atomic uint32_t writer_pid;
	_Atomic uint64_t writer_gen;
	_Atomic uint32_t reader_state;
	_Atomic uint32_t reader_pid;
	_Atomic uint64_t reader_gen;
	uint8_t pad4[128 - 32];

	/* 640: kind identity (broadcast), written before magic like the identity line */
	_Atomic uint32_t max_readers;
	_Atomic uint32_t policy;
	_Atomic uint64_t readers_offset;
	uint8_t pad5[128 - 16];

	/* 768: broadcast writer's reader scan */
	_Atomic uint64_t scan_seq; /* odd while the writer scans the reader places */
	_Atomic uint64_t floor;    /* the writer never overwrites a position >= floor */
	_Atomic uint64_t need;     /* while writer_waiting: it waits for every reader to reach this */
	uint8_t pad6[128 - 24];

	/* 896: reserved */
	uint8_t reserved[SHMCHAN_CONTROL_SIZE - 896];
};

/* A broadcast or state slot-table entry. */
struct shmchan_slot_meta {
	_Atomic uint64_t seq; /* position + 1 (version, for state) once committed; SHMCHAN_SEQ_WRITING while written */
	_Atomic uint64_t len;
};

/* A broadcast reader place (128 bytes: its owner writes it on every release). */
struct shmchan_reader_place {
	_Atomic uint32_t state; /* SHMCHAN_PEER_*: NONE (free), ATTACHED, CLOSED (free) */
	_Atomic uint32_t pid;
	_Atomic uint64_t gen;
	_Atomic uint64_t cursor;   /* oldest position this reader still needs (block policy: the writer waits) */
	_Atomic uint64_t messages; /* released */
	_Atomic uint64_t bytes;
	_Atomic uint64_t lost;  /* skipped because the writer lapped this reader (overwrite policy) */
	_Atomic uint64_t empty; /* waits on an empty ring */
	uint8_t pad[SHMCHAN_READER_PLACE_SIZE - 56];
};
_Static_assert(sizeof(struct shmchan_slot_meta) == 16, "slot meta size");
_Static_assert(sizeof(struct shmchan_reader_place) == SHMCHAN_READER_PLACE_SIZE, "reader place size");

/* Offsets as named constants, so that other languages (and shmchan._layout) read them from here. */
enum shmchan_offsets {
	SHMCHAN_OFF_MAGIC = 0,
	SHMCHAN_OFF_VERSION_MAJOR = 8,
	SHMCHAN_OFF_VERSION_MINOR = 10,
	SHMCHAN_OFF_KIND = 12,
	SHMCHAN_OFF_FLAGS = 16,
	SHMCHAN_OFF_CAPACITY = 20,
	SHMCHAN_OFF_SLOT_SIZE = 24,
	SHMCHAN_OFF_SLOT_STRIDE = 32,
	SHMCHAN_OFF_SLOT_ALIGN = 40,
	SHMCHAN_OFF_CREATOR_PID = 44,
	SHMCHAN_OFF_LENS_OFFSET = 48,
	SHMCHAN_OFF_DATA_OFFSET = 56,
	SHMCHAN_OFF_TOTAL_SIZE = 64,
	SHMCHAN_OFF_CREATED_NS = 72,
	SHMCHAN_OFF_DESCRIPTOR_OFFSET = 80,
	SHMCHAN_OFF_DESCRIPTOR_SIZE = 88,
	SHMCHAN_OFF_HEAD = 128,
	SHMCHAN_OFF_HEAD_WAKE = 136,
	SHMCHAN_OFF_W_MESSAGES = 144,
	SHMCHAN_OFF_W_BYTES = 152,
	SHMCHAN_OFF_W_FULL = 160,
	SHMCHAN_OFF_W_ABORTS = 168,
	SHMCHAN_OFF_TAIL = 256,
	SHMCHAN_OFF_TAIL_WAKE = 264,
	SHMCHAN_OFF_R_MESSAGES = 272,
	SHMCHAN_OFF_R_BYTES = 280,
	SHMCHAN_OFF_R_EMPTY = 288,
	SHMCHAN_OFF_READER_WAITING = 384,
	SHMCHAN_OFF_WRITER_WAITING = 388,
	SHMCHAN_OFF_WRITER_STATE = 512,
	SHMCHAN_OFF_WRITER_PID = 516,
	SHMCHAN_OFF_WRITER_GEN = 520,
	SHMCHAN_OFF_READER_STATE = 528,
	SHMCHAN_OFF_READER_PID = 532,
	SHMCHAN_OFF_READER_GEN = 536,
	SHMCHAN_OFF_MAX_READERS = 640,
	SHMCHAN_OFF_POLICY = 644,
	SHMCHAN_OFF_READERS_OFFSET = 648,
	SHMCHAN_OFF_SCAN_SEQ = 768,
	SHMCHAN_OFF_FLOOR = 776,
	SHMCHAN_OFF_NEED = 784,
	/* inside a reader place */
	SHMCHAN_PLACE_STATE = 0,
	SHMCHAN_PLACE_PID = 4,
	SHMCHAN_PLACE_GEN = 8,
	SHMCHAN_PLACE_CURSOR = 16,
	SHMCHAN_PLACE_MESSAGES = 24,
	SHMCHAN_PLACE_BYTES = 32,
	SHMCHAN_PLACE_LOST = 40,
	SHMCHAN_PLACE_EMPTY = 48,
};

#define SHMCHAN_CHECK_OFF(field, OFF) _Static_assert(offsetof(struct shmchan_header, field) == (OFF), #field)
SHMCHAN_CHECK_OFF(magic, SHMCHAN_OFF_MAGIC);
SHMCHAN_CHECK_OFF(version_major, SHMCHAN_OFF_VERSION_MAJOR);
SHMCHAN_CHECK_OFF(version_minor, SHMCHAN_OFF_VERSION_MINOR);
SHMCHAN_CHECK_OFF(kind, SHMCHAN_OFF_KIND);
SHMCHAN_CHECK_OFF(flags, SHMCHAN_OFF_FLAGS);
SHMCHAN_CHECK_OFF(capacity, SHMCHAN_OFF_CAPACITY);
SHMCHAN_CHECK_OFF(slot_size, SHMCHAN_OFF_SLOT_SIZE);
SHMCHAN_CHECK_OFF(slot_stride, SHMCHAN_OFF_SLOT_STRIDE);
SHMCHAN_CHECK_OFF(slot_align, SHMCHAN_OFF_SLOT_ALIGN);
SHMCHAN_CHECK_OFF(creator_pid, SHMCHAN_OFF_CREATOR_PID);
SHMCHAN_CHECK_OFF(lens_offset, SHMCHAN_OFF_LENS_OFFSET);
SHMCHAN_CHECK_OFF(data_offset, SHMCHAN_OFF_DATA_OFFSET);
SHMCHAN_CHECK_OFF(total_size, SHMCHAN_OFF_TOTAL_SIZE);
SHMCHAN_CHECK_OFF(created_ns, SHMCHAN_OFF_CREATED_NS);
SHMCHAN_CHECK_OFF(descriptor_offset, SHMCHAN_OFF_DESCRIPTOR_OFFSET);
SHMCHAN_CHECK_OFF(descriptor_size, SHMCHAN_OFF_DESCRIPTOR_SIZE);
SHMCHAN_CHECK_OFF(head, SHMCHAN_OFF_HEAD);
SHMCHAN_CHECK_OFF(head_wake, SHMCHAN_OFF_HEAD_WAKE);
SHMCHAN_CHECK_OFF(w_messages, SHMCHAN_OFF_W_MESSAGES);
SHMCHAN_CHECK_OFF(w_bytes, SHMCHAN_OFF_W_BYTES);
SHMCHAN_CHECK_OFF(w_full, SHMCHAN_OFF_W_FULL);
SHMCHAN_CHECK_OFF(w_aborts, SHMCHAN_OFF_W_ABORTS);
SHMCHAN_CHECK_OFF(tail, SHMCHAN_OFF_TAIL);
SHMCHAN_CHECK_OFF(tail_wake, SHMCHAN_OFF_TAIL_WAKE);
SHMCHAN_CHECK_OFF(r_messages, SHMCHAN_OFF_R_MESSAGES);
SHMCHAN_CHECK_OFF(r_bytes, SHMCHAN_OFF_R_BYTES);
SHMCHAN_CHECK_OFF(r_empty, SHMCHAN_OFF_R_EMPTY);
SHMCHAN_CHECK_OFF(reader_waiting, SHMCHAN_OFF_READER_WAITING);
SHMCHAN_CHECK_OFF(writer_waiting, SHMCHAN_OFF_WRITER_WAITING);
SHMCHAN_CHECK_OFF(writer_state, SHMCHAN_OFF_WRITER_STATE);
SHMCHAN_CHECK_OFF(writer_pid, SHMCHAN_OFF_WRITER_PID);
SHMCHAN_CHECK_OFF(writer_gen, SHMCHAN_OFF_WRITER_GEN);
SHMCHAN_CHECK_OFF(reader_state, SHMCHAN_OFF_READER_STATE);
SHMCHAN_CHECK_OFF(reader_pid, SHMCHAN_OFF_READER_PID);
SHMCHAN_CHECK_OFF(reader_gen, SHMCHAN_OFF_READER_GEN);
SHMCHAN_CHECK_OFF(max_readers, SHMCHAN_OFF_MAX_READERS);
SHMCHAN_CHECK_OFF(policy, SHMCHAN_OFF_POLICY);
SHMCHAN_CHECK_OFF(readers_offset, SHMCHAN_OFF_READERS_OFFSET);
SHMCHAN_CHECK_OFF(scan_seq, SHMCHAN_OFF_SCAN_SEQ);
SHMCHAN_CHECK_OFF(floor, SHMCHAN_OFF_FLOOR);
SHMCHAN_CHECK_OFF(need, SHMCHAN_OFF_NEED);
_Static_assert(offsetof(struct shmchan_reader_place, cursor) == SHMCHAN_PLACE_CURSOR, "place cursor");
_Static_assert(offsetof(struct shmchan_reader_place, lost) == SHMCHAN_PLACE_LOST, "place lost");
_Static_assert(offsetof(struct shmchan_reader_place, empty) == SHMCHAN_PLACE_EMPTY, "place empty");
_Static_assert(sizeof(struct shmchan_header) == SHMCHAN_CONTROL_SIZE, "control block size");
#undef SHMCHAN_CHECK_OFF

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the layout is little-endian");

/* Limits on geometry (checked at create and again on every open). */
#define SHMCHAN_MAX_CAPACITY (1u << 24)
#define SHMCHAN_MAX_SLOT_SIZE (1ull << 40)
#define SHMCHAN_MIN_SLOT_ALIGN 8u
#define SHMCHAN_MAX_SLOT_ALIGN (1u << 21)
#define SHMCHAN_MAX_TOTAL_SIZE (1ull << 46)
#define SHMCHAN_MAX_DESCRIPTOR_SIZE (1u << 16)
#define SHMCHAN_DESCRIPTOR_ALIGN 64u
/*
 * The slot area starts at a multiple of max(SHMCHAN_LAYOUT_PAGE, slot_align): a constant of the
 * layout, not the machine's page size, so peers on machines with other page sizes compute the
 * same data_offset.
 */
#define SHMCHAN_LAYOUT_PAGE 4096u
/* slot_align 0 at create: slots under SHMCHAN_LAYOUT_PAGE bytes pack on cache lines, larger ones
   start on a page (see shmchan_default_slot_align) */
#define SHMCHAN_SMALL_SLOT_ALIGN 64u

#endif
