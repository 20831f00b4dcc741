/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: random header bytes and file sizes through shmchan_validate_header. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "internal.h"

/*
 * Input: [0,8) the object's size in bytes (u64 LE); [8] option bits: bit 7 forces a valid magic and
 * major version (so mutations reach the geometry checks), bits 0-1 are unused (they chose a page
 * size before the layout had its own, SHMCHAN_LAYOUT_PAGE); [9,...) the header image, zero-padded
 * to 1024 bytes.
 *
 * Checks: only the four documented codes come back; a nonempty diagnostic; the same answer twice;
 * and when the header is accepted, a geometry in which every region lies inside the object and in
 * order: the slot table (8 bytes per slot for SPSC, a 16-byte {seq, len} pair per slot for
 * BROADCAST and STATE), a broadcast channel's reader places, the descriptor, then the slots.
 */

static void check_geometry(const struct shmchan_geom *g, uint64_t file_size)
{
	uint64_t entry, tables_end, slots;

	FUZZ_CHECK(g->version_major == SHMCHAN_LAYOUT_MAJOR);
	FUZZ_CHECK(g->capacity >= 1 && g->capacity <= SHMCHAN_MAX_CAPACITY);
	FUZZ_CHECK((g->capacity & (g->capacity - 1)) == 0 && g->mask == g->capacity - 1);
	FUZZ_CHECK(g->slot_size >= 1 && g->slot_size <= SHMCHAN_MAX_SLOT_SIZE);
	FUZZ_CHECK(g->slot_align >= SHMCHAN_MIN_SLOT_ALIGN && g->slot_align <= SHMCHAN_MAX_SLOT_ALIGN);
	FUZZ_CHECK((g->slot_align & (g->slot_align - 1)) == 0);
	FUZZ_CHECK(g->slot_stride >= g->slot_size && g->slot_stride % g->slot_align == 0);
	FUZZ_CHECK(g->slot_stride - g->slot_size < g->slot_align);
	FUZZ_CHECK(g->lens_offset == SHMCHAN_LENS_OFFSET);
	/* the slot table: one uint64 length per slot (SPSC) or one {seq, len} pair (the other kinds);
	   a broadcast channel's reader places follow it, 128-byte aligned */
	entry = g->kind == SHMCHAN_KIND_SPSC ? sizeof(uint64_t) : sizeof(struct shmchan_slot_meta);
	tables_end = g->lens_offset + entry * g->capacity;
	switch (g->kind) {
	case SHMCHAN_KIND_SPSC:
		FUZZ_CHECK(g->max_readers == 0 && g->policy == 0 && g->readers_offset == 0);
		break;
	case SHMCHAN_KIND_BROADCAST:
		FUZZ_CHECK(g->capacity >= 2);
		FUZZ_CHECK(g->max_readers >= 1 && g->max_readers <= SHMCHAN_MAX_READERS);
		FUZZ_CHECK(g->policy == SHMCHAN_POLICY_BLOCK || g->policy == SHMCHAN_POLICY_OVERWRITE);
		FUZZ_CHECK(g->readers_offset >= tables_end && g->readers_offset % SHMCHAN_READER_PLACE_SIZE == 0);
		tables_end = g->readers_offset + (uint64_t)g->max_readers * SHMCHAN_READER_PLACE_SIZE;
		break;
	case SHMCHAN_KIND_STATE:
		FUZZ_CHECK(g->capacity == SHMCHAN_STATE_SLOTS);
		FUZZ_CHECK(g->max_readers == 0 && g->policy == 0 && g->readers_offset == 0);
		break;
	default:
		FUZZ_CHECK_MSG(0, "accepted kind %u", g->kind);
	}
	FUZZ_CHECK(tables_end <= g->data_offset);
	if (g->descriptor_size) {
		FUZZ_CHECK(g->descriptor_size <= SHMCHAN_MAX_DESCRIPTOR_SIZE);
		FUZZ_CHECK(g->descriptor_offset >= tables_end && g->descriptor_offset % SHMCHAN_DESCRIPTOR_ALIGN == 0);
		FUZZ_CHECK(g->descriptor_offset + g->descriptor_size <= g->data_offset);
	} else {
		FUZZ_CHECK(g->descriptor_offset == 0);
	}
	FUZZ_CHECK(g->data_offset % SHMCHAN_LAYOUT_PAGE == 0 && g->data_offset % g->slot_align == 0);
	FUZZ_CHECK(!__builtin_mul_overflow((uint64_t)g->capacity, g->slot_stride, &slots));
	FUZZ_CHECK(g->data_offset + slots == g->total_size);
	FUZZ_CHECK(g->total_size <= file_size);
	FUZZ_CHECK(g->total_size <= SHMCHAN_MAX_TOTAL_SIZE);
	FUZZ_CHECK((g->flags & ~(uint32_t)SHMCHAN_FLAGS_KNOWN) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shmchan_header *h;
	struct shmchan_geom g, g2;
	struct shmchan_diag diag, diag2;
	uint64_t file_size = 0;
	uint8_t opts = 0;
	int rc, rc2;

	if (size >= 8)
		memcpy(&file_size, data, 8);
	if (size >= 9)
		opts = data[8];
	/* a heap copy of exactly the header size: ASan sees any read past it */
	h = calloc(1, sizeof(*h));
	FUZZ_CHECK(h != NULL);
	if (size > 9)
		memcpy(h, data + 9, size - 9 < sizeof(*h) ? size - 9 : sizeof(*h));
	if (opts & 0x80) {
		uint64_t magic = SHMCHAN_MAGIC;
		uint16_t major = SHMCHAN_LAYOUT_MAJOR;
		memcpy((uint8_t *)h + SHMCHAN_OFF_MAGIC, &magic, 8);
		memcpy((uint8_t *)h + SHMCHAN_OFF_VERSION_MAJOR, &major, 2);
	}

	memset(&diag, 0x55, sizeof(diag));
	memset(&g, 0xAA, sizeof(g));
	rc = shmchan_validate_header(h, file_size, &g, &diag);
	if (rc == 0) {
		check_geometry(&g, file_size);
	} else {
		FUZZ_CHECK_MSG(rc == -SHMCHAN_ENOTINIT || rc == -SHMCHAN_EBADMAGIC || rc == -SHMCHAN_EVERSION ||
				       rc == -SHMCHAN_ECORRUPT,
			       "unexpected code %d", rc);
		FUZZ_CHECK(memchr(diag.message, 0, sizeof(diag.message)) != NULL);
		FUZZ_CHECK(diag.message[0] != 0);
	}
	/* no hidden state: the same bytes give the same answer */
	rc2 = shmchan_validate_header(h, file_size, &g2, &diag2);
	FUZZ_CHECK(rc2 == rc);
	if (rc == 0)
		FUZZ_CHECK(memcmp(&g, &g2, sizeof(g)) == 0);
	free(h);
	return 0;
}
