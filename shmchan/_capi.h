/* SPDX-License-Identifier: MIT */
/*
 * The table of the C core's functions that the CFFI module (shmchan._shmchan_cffi, the one place the
 * core is compiled into the package) hands to the native data plane (shmchan._core), as numpy hands
 * its C API to other extensions. The core keeps process-wide state (the SIGBUS guard), so it must
 * exist once: _core calls it through these pointers and never links a copy of its own.
 *
 * Append new members at the end only, and bump SHMCHAN_CAPI_VERSION when a member changes.
 */
#ifndef SHMCHAN_CAPI_H
#define SHMCHAN_CAPI_H

#include <stdint.h>

#include "shmchan.h"

#define SHMCHAN_CAPI_MAGIC 0x4950414E48434D53ULL /* "SMCHNAPI" read as little-endian bytes */
#define SHMCHAN_CAPI_VERSION 1u

struct shmchan_capi {
	uint64_t magic;
	uint32_t version;
	uint32_t size; /* sizeof(struct shmchan_capi) */
	/* channels */
	void (*close)(shmchan_channel *ch);
	void (*forget_inherited)(shmchan_channel *ch);
	void (*interrupt)(shmchan_channel *ch);
	int (*info)(const shmchan_channel *ch, struct shmchan_info *out);
	int (*stats)(const shmchan_channel *ch, struct shmchan_stats *out);
	const char *(*channel_diag)(const shmchan_channel *ch);
	int (*wait_head_spin)(shmchan_channel *ch, uint64_t pos, int64_t spin_ns, int64_t timeout_ns);
	void (*wake_head)(shmchan_channel *ch);
	/* writers */
	int (*writer_attach)(shmchan_channel *ch, shmchan_writer **out);
	void (*writer_close)(shmchan_writer *w);
	void (*writer_end)(shmchan_writer *w);
	void (*writer_set_spin)(shmchan_writer *w, int64_t spin_ns);
	void (*writer_continue_wait)(shmchan_writer *w);
	uint64_t (*writer_position)(const shmchan_writer *w);
	int (*reserve)(shmchan_writer *w, uint64_t nbytes, int64_t timeout_ns, void **data, uint32_t *slot);
	int (*try_reserve)(shmchan_writer *w, uint64_t nbytes, void **data, uint32_t *slot);
	int (*commit)(shmchan_writer *w, uint64_t nbytes);
	int (*abort)(shmchan_writer *w);
	void (*writer_interrupt)(shmchan_writer *w);
	/* readers */
	int (*reader_attach_ex)(shmchan_channel *ch, uint32_t flags, shmchan_reader **out);
	void (*reader_close)(shmchan_reader *r);
	void (*reader_set_spin)(shmchan_reader *r, int64_t spin_ns);
	void (*reader_continue_wait)(shmchan_reader *r);
	int (*peek_batch)(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns);
	int (*try_peek_batch)(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max);
	int (*release)(shmchan_reader *r, uint64_t pos);
	int (*check)(shmchan_reader *r, uint64_t pos);
	void (*reader_count_empty)(shmchan_reader *r);
	uint64_t (*reader_outstanding)(const shmchan_reader *r);
	uint64_t (*reader_lost)(const shmchan_reader *r);
	uint64_t (*reader_position)(const shmchan_reader *r);
	/* state boards */
	int (*state_read)(shmchan_channel *ch, void *buf, uint64_t cap, uint64_t *len, uint64_t *version);
	uint64_t (*state_version)(const shmchan_channel *ch);
	int (*state_wait)(shmchan_channel *ch, uint64_t version, int64_t timeout_ns, uint64_t *now);
	const char *(*strerror)(int err);
};

#endif
