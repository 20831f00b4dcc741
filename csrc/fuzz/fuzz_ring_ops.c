/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: ring operations on a channel whose shared bytes a hostile peer overwrites. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzzutil.h"
#include "internal.h"

/*
 * One channel (8 slots of 64 bytes, 8-byte aligned) is created once per process. Every input starts
 * from its pristine image, opens a writer handle and a reader handle (two handles, as two processes
 * would have), and runs a sequence of operations decoded from the input, with every wait at timeout
 * 0. Some operations overwrite header or length-table bytes through a raw mapping, as a hostile or
 * broken peer would.
 *
 * Checks, always: return codes are in each call's documented set; every pointer the core hands out
 * lies inside its slot and every length within slot_size (the harness then reads or writes all of
 * it, so a bad one crashes under ASan or SIGSEGV); a position given by peek is the reader's next
 * one; release follows the reader's own bookkeeping; a poisoned handle stays poisoned. As long as
 * no byte was overwritten, the exact results of a reference model: FIFO order, lengths, payload
 * bytes, full and empty.
 */

#define SLOT 64u
#define CAP 8u
#define LENS_END (SHMCHAN_LENS_OFFSET + 8u * CAP)
#define MAX_OPS 512

static char g_name[64];
static shmchan_channel *g_creator;
static uint8_t *g_raw;    /* a raw read-write mapping of the whole object */
static uint8_t *g_pristine; /* its bytes right after create */
static size_t g_size;

static void teardown(void)
{
	if (g_creator) {
		shmchan_channel_unlink(g_creator);
		shmchan_close(g_creator);
		g_creator = NULL;
	}
}

static void setup(void)
{
	struct shmchan_config cfg;
	struct stat st;
	char shm[128];
	int fd;

	fuzz_remove_orphans("ring");
	snprintf(g_name, sizeof(g_name), "fuzz-ring-%ld", (long)getpid());
	memset(&cfg, 0, sizeof(cfg));
	cfg.slot_size = SLOT;
	cfg.capacity = CAP;
	cfg.slot_align = 8;
	FUZZ_CHECK(shmchan_create(g_name, &cfg, &g_creator, NULL) == 0);
	atexit(teardown);
	snprintf(shm, sizeof(shm), "/shmchan.%s", g_name);
	fd = shm_open(shm, O_RDWR, 0);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(fstat(fd, &st) == 0);
	g_size = (size_t)st.st_size;
	g_raw = mmap(NULL, g_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	FUZZ_CHECK(g_raw != MAP_FAILED);
	close(fd);
	g_pristine = malloc(g_size);
	FUZZ_CHECK(g_pristine != NULL);
	memcpy(g_pristine, g_raw, g_size);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setup();
	return 0;
}

/* ---- input decoding ---- */

struct in {
	const uint8_t *p;
	size_t n;
};

static uint8_t u8(struct in *in)
{
	uint8_t v = 0;
	if (in->n) {
		v = *in->p++;
		in->n--;
	}
	return v;
}

static uint64_t u64(struct in *in)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)u8(in) << (8 * i);
	return v;
}

static uint64_t raw_get64(size_t off)
{
	uint64_t v;
	memcpy(&v, g_raw + off, 8);
	return v;
}

static void raw_put64(size_t off, uint64_t v)
{
	memcpy(g_raw + off, &v, 8);
}

/* ---- the state of one run ---- */

struct run {
	shmchan_channel *wch, *rch;
	shmchan_writer *w;
	shmchan_reader *r;
	int w_poisoned, r_poisoned;
	int poked;        /* some shared byte was overwritten: only the always-true checks apply */
	int writer_closed; /* the writer detached cleanly: an empty ring reports the end */
	int lost_track;    /* peek_batch failed after taking messages: release is no longer predictable */
	/* writer mirror */
	uint64_t w_head;
	uint64_t reserved; /* UINT64_MAX: none */
	/* reader mirror (exact even after pokes: the reader only trusts its own copies) */
	uint64_t r_tail, r_read;
	uint8_t rel[CAP];
	/* model (valid while !poked) */
	uint64_t m_tail; /* the tail the writer sees */
	uint64_t m_len[CAP];
	uint8_t *data_w, *data_r; /* slot 0 in each handle's mapping */
	uint64_t stride;
};

static uint8_t pattern(uint64_t pos, uint64_t i)
{
	return (uint8_t)(pos * 31 + i * 7 + 1);
}

static int is_ok_code(int rc, const int *codes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (rc == codes[i])
			return 1;
	return 0;
}

#define EXPECT_IN(rc, ...)                                                                      \
	do {                                                                                    \
		static const int codes_[] = {__VA_ARGS__};                                      \
		FUZZ_CHECK_MSG(is_ok_code((rc), codes_, sizeof(codes_) / sizeof(codes_[0])), \
			       "code %d (%s)", (rc), shmchan_strerror(rc));                     \
	} while (0)

static void writer_attach(struct run *s)
{
	uint64_t head = raw_get64(SHMCHAN_OFF_HEAD);
	int rc = shmchan_writer_attach(s->wch, &s->w);

	EXPECT_IN(rc, 0, -SHMCHAN_ECORRUPT);
	if (s->w_poisoned)
		FUZZ_CHECK(rc == -SHMCHAN_ECORRUPT);
	if (!s->poked)
		FUZZ_CHECK(rc == 0);
	if (rc) {
		s->w = NULL;
		s->w_poisoned = 1;
		return;
	}
	s->w_head = head;
	s->reserved = UINT64_MAX;
	s->writer_closed = 0;
}

static void reader_attach(struct run *s)
{
	uint64_t tail = raw_get64(SHMCHAN_OFF_TAIL);
	int rc = shmchan_reader_attach(s->rch, &s->r);

	EXPECT_IN(rc, 0, -SHMCHAN_ECORRUPT);
	if (s->r_poisoned)
		FUZZ_CHECK(rc == -SHMCHAN_ECORRUPT);
	if (!s->poked)
		FUZZ_CHECK(rc == 0);
	if (rc) {
		s->r = NULL;
		s->r_poisoned = 1;
		return;
	}
	s->r_tail = s->r_read = tail;
	memset(s->rel, 0, sizeof(s->rel));
	s->lost_track = 0;
}

static void writer_close(struct run *s)
{
	if (!s->w)
		return;
	shmchan_writer_close(s->w);
	s->w = NULL;
	s->reserved = UINT64_MAX;
	s->writer_closed = 1;
}

static void reader_close(struct run *s)
{
	if (!s->r)
		return;
	shmchan_reader_close(s->r);
	s->r = NULL;
}

static int open_handles(struct run *s)
{
	struct shmchan_diag diag;
	int rc;

	rc = shmchan_open(g_name, 0, &s->wch, &diag);
	EXPECT_IN(rc, 0, -SHMCHAN_EBADMAGIC, -SHMCHAN_EVERSION, -SHMCHAN_ECORRUPT, -SHMCHAN_ENOTINIT);
	if (!s->poked)
		FUZZ_CHECK(rc == 0);
	if (rc)
		return rc;
	rc = shmchan_open(g_name, 0, &s->rch, &diag);
	FUZZ_CHECK(rc == 0); /* the same bytes were just accepted */
	s->w_poisoned = s->r_poisoned = 0;
	s->data_w = shmchan_slot_address(s->wch, 0);
	s->data_r = shmchan_slot_address(s->rch, 0);
	{
		struct shmchan_info info;
		FUZZ_CHECK(shmchan_info(s->rch, &info) == 0);
		FUZZ_CHECK(info.slot_size <= info.slot_stride);
		FUZZ_CHECK(info.data_offset + (uint64_t)info.capacity * info.slot_stride <= g_size);
		if (info.capacity != CAP || info.slot_size != SLOT) {
			/* a hostile peer rewrote the identity into another consistent geometry that fits the
			   object: accepted, but the rest of this input assumes the original one */
			FUZZ_CHECK(s->poked);
			shmchan_close(s->wch);
			shmchan_close(s->rch);
			s->wch = s->rch = NULL;
			return 1;
		}
		s->stride = info.slot_stride;
	}
	writer_attach(s);
	reader_attach(s);
	return 0;
}

static void close_handles(struct run *s)
{
	writer_close(s);
	reader_close(s);
	shmchan_close(s->wch);
	shmchan_close(s->rch);
	s->wch = s->rch = NULL;
}

/* ---- writer operations ---- */

static void op_reserve(struct run *s, uint64_t n)
{
	void *data = NULL;
	uint32_t slot = UINT32_MAX;
	int rc;

	if (!s->w)
		return;
	rc = shmchan_reserve(s->w, n, 0, &data, &slot);
	EXPECT_IN(rc, 0, -EAGAIN, -EMSGSIZE, -EALREADY, -SHMCHAN_ECORRUPT, -SHMCHAN_EPEERDEAD);
	if (s->w_poisoned)
		FUZZ_CHECK(rc == -SHMCHAN_ECORRUPT);
	if (rc == -SHMCHAN_ECORRUPT)
		s->w_poisoned = 1;
	if (!s->w_poisoned) {
		if (s->reserved != UINT64_MAX)
			FUZZ_CHECK(rc == -EALREADY);
		else if (n > SLOT)
			FUZZ_CHECK(rc == -EMSGSIZE);
	}
	if (!s->poked && s->reserved == UINT64_MAX && n <= SLOT)
		FUZZ_CHECK(rc == (s->w_head - s->m_tail >= CAP ? -EAGAIN : 0));
	if (rc)
		return;
	FUZZ_CHECK(s->reserved == UINT64_MAX && n <= SLOT);
	FUZZ_CHECK(slot == (uint32_t)(s->w_head & (CAP - 1)));
	FUZZ_CHECK((uint8_t *)data == s->data_w + (uint64_t)slot * s->stride);
	for (uint64_t i = 0; i < n; i++)
		((uint8_t *)data)[i] = pattern(s->w_head, i);
	s->reserved = n;
}

static void op_commit(struct run *s, uint64_t n)
{
	int rc;

	if (!s->w)
		return;
	rc = shmchan_commit(s->w, n);
	EXPECT_IN(rc, 0, -ENOENT, -EMSGSIZE);
	if (s->reserved == UINT64_MAX)
		FUZZ_CHECK(rc == -ENOENT);
	else
		FUZZ_CHECK(rc == (n > s->reserved ? -EMSGSIZE : 0));
	if (rc)
		return;
	s->m_len[s->w_head & (CAP - 1)] = n;
	s->w_head++;
	s->reserved = UINT64_MAX;
}

static void op_abort(struct run *s)
{
	int rc;

	if (!s->w)
		return;
	rc = shmchan_abort(s->w);
	FUZZ_CHECK(rc == (s->reserved == UINT64_MAX ? -ENOENT : 0));
	s->reserved = UINT64_MAX;
}

static void op_send(struct run *s, uint64_t n)
{
	uint8_t buf[SLOT + 8];
	int rc;

	if (!s->w)
		return;
	for (uint64_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(s->w_head, i);
	rc = shmchan_send(s->w, (const char *)buf, n, 0);
	EXPECT_IN(rc, 0, -EAGAIN, -EMSGSIZE, -EALREADY, -SHMCHAN_ECORRUPT, -SHMCHAN_EPEERDEAD);
	if (s->w_poisoned)
		FUZZ_CHECK(rc == -SHMCHAN_ECORRUPT);
	if (rc == -SHMCHAN_ECORRUPT)
		s->w_poisoned = 1;
	if (!s->poked && !s->w_poisoned) {
		if (s->reserved != UINT64_MAX)
			FUZZ_CHECK(rc == -EALREADY);
		else if (n > SLOT)
			FUZZ_CHECK(rc == -EMSGSIZE);
		else
			FUZZ_CHECK(rc == (s->w_head - s->m_tail >= CAP ? -EAGAIN : 0));
	}
	if (rc)
		return;
	s->m_len[s->w_head & (CAP - 1)] = n;
	s->w_head++;
}

/* ---- reader operations ---- */

/* Checks one message handed out by the core; copies its bytes (a bad pointer or length crashes). */
static void check_msg(struct run *s, const struct shmchan_msg *m)
{
	uint8_t *copy;

	FUZZ_CHECK(m->pos == s->r_read);
	FUZZ_CHECK(m->slot == (uint32_t)(m->pos & (CAP - 1)));
	FUZZ_CHECK(m->len <= SLOT);
	FUZZ_CHECK((uint8_t *)m->data == s->data_r + (uint64_t)m->slot * s->stride);
	copy = malloc(m->len ? m->len : 1);
	FUZZ_CHECK(copy != NULL);
	memcpy(copy, m->data, m->len);
	if (!s->poked) {
		FUZZ_CHECK(m->len == s->m_len[m->slot]);
		for (uint64_t i = 0; i < m->len; i++)
			FUZZ_CHECK_MSG(copy[i] == pattern(m->pos, i), "message %llu byte %llu",
				       (unsigned long long)m->pos, (unsigned long long)i);
	}
	free(copy);
	s->r_read++;
}

/* The code a wait at timeout 0 on an empty ring gives, in the model. */
static int model_empty_code(const struct run *s)
{
	if (s->r_read - s->r_tail == CAP)
		return -SHMCHAN_EPINNED;
	return s->writer_closed ? -SHMCHAN_EENDED : -EAGAIN;
}

static void reader_result(struct run *s, int rc)
{
	if (s->r_poisoned)
		FUZZ_CHECK(rc == -SHMCHAN_ECORRUPT);
	if (rc == -SHMCHAN_ECORRUPT)
		s->r_poisoned = 1;
}

static void op_peek(struct run *s)
{
	struct shmchan_msg m;
	int rc;

	if (!s->r)
		return;
	rc = shmchan_peek(s->r, 0, &m);
	EXPECT_IN(rc, 0, -EAGAIN, -SHMCHAN_ECORRUPT, -SHMCHAN_EPINNED, -SHMCHAN_EPEERDEAD, -SHMCHAN_EENDED);
	reader_result(s, rc);
	if (!s->poked)
		FUZZ_CHECK(rc == (s->r_read == s->w_head ? model_empty_code(s) : 0));
	if (rc == 0)
		check_msg(s, &m);
}

static void op_peek_batch(struct run *s, uint32_t max)
{
	struct shmchan_msg *msgs;
	int rc;

	if (!s->r)
		return;
	msgs = malloc(sizeof(*msgs) * max); /* exactly max: ASan sees a write past it */
	FUZZ_CHECK(msgs != NULL);
	rc = shmchan_peek_batch(s->r, msgs, max, 0);
	if (rc < 0) {
		EXPECT_IN(rc, -EAGAIN, -SHMCHAN_ECORRUPT, -SHMCHAN_EPINNED, -SHMCHAN_EPEERDEAD, -SHMCHAN_EENDED);
		reader_result(s, rc);
		if (!s->poked)
			FUZZ_CHECK(s->r_read == s->w_head && rc == model_empty_code(s));
		/* a batch that hits corruption after taking some messages reports only the corruption
		   (the handle is poisoned): the reader's position moved without the caller knowing */
		if (rc == -SHMCHAN_ECORRUPT)
			s->lost_track = 1;
	} else {
		FUZZ_CHECK(!s->r_poisoned);
		FUZZ_CHECK(rc >= 1 && (uint32_t)rc <= max);
		if (!s->poked) {
			uint64_t avail = s->w_head - s->r_read;
			FUZZ_CHECK((uint64_t)rc == (avail < max ? avail : max));
		}
		for (int i = 0; i < rc; i++)
			check_msg(s, &msgs[i]);
	}
	free(msgs);
}

static int outstanding(const struct run *s, uint64_t pos)
{
	return pos - s->r_tail < s->r_read - s->r_tail && !s->rel[pos & (CAP - 1)];
}

static void mirror_release(struct run *s, uint64_t pos)
{
	s->rel[pos & (CAP - 1)] = 1;
	while (s->r_tail != s->r_read && s->rel[s->r_tail & (CAP - 1)]) {
		s->rel[s->r_tail & (CAP - 1)] = 0;
		s->r_tail++;
	}
	if (!s->poked)
		s->m_tail = s->r_tail;
}

static void op_release(struct run *s, uint64_t pos)
{
	int rc, want;

	if (!s->r)
		return;
	want = outstanding(s, pos) ? 0 : -EINVAL;
	rc = shmchan_release(s->r, pos);
	if (s->r_poisoned) { /* what was read from a poisoned channel cannot be trusted: no release */
		FUZZ_CHECK(rc == -SHMCHAN_ECORRUPT);
		return;
	}
	if (s->lost_track) {
		EXPECT_IN(rc, 0, -EINVAL);
		return;
	}
	FUZZ_CHECK_MSG(rc == want, "release(%llu) gave %d, wanted %d", (unsigned long long)pos, rc, want);
	if (rc == 0)
		mirror_release(s, pos);
}

static void op_recv(struct run *s, uint64_t cap)
{
	struct shmchan_msg m;
	uint8_t *buf = malloc(cap ? cap : 1); /* exactly cap bytes: ASan sees a copy past it */
	uint64_t len = UINT64_MAX;
	int rc;

	FUZZ_CHECK(buf != NULL);
	if (!s->r) {
		free(buf);
		return;
	}
	rc = shmchan_recv(s->r, buf, cap, &len, 0);
	EXPECT_IN(rc, 0, -EAGAIN, -EMSGSIZE, -SHMCHAN_ECORRUPT, -SHMCHAN_EPINNED, -SHMCHAN_EPEERDEAD,
		  -SHMCHAN_EENDED);
	reader_result(s, rc);
	if (!s->poked) {
		if (s->r_read == s->w_head)
			FUZZ_CHECK(rc == model_empty_code(s));
		else
			FUZZ_CHECK(rc == (s->m_len[s->r_read & (CAP - 1)] > cap ? -EMSGSIZE : 0));
	}
	if (rc == -EMSGSIZE)
		FUZZ_CHECK(len > cap && len <= SLOT);
	if (rc == 0) {
		FUZZ_CHECK(len <= cap && len <= SLOT);
		m.pos = s->r_read;
		m.len = len;
		if (!s->poked) {
			FUZZ_CHECK(len == s->m_len[m.pos & (CAP - 1)]);
			for (uint64_t i = 0; i < len; i++)
				FUZZ_CHECK(buf[i] == pattern(m.pos, i));
		}
		s->r_read++;
		mirror_release(s, m.pos);
	}
	free(buf);
}

/* ---- the hostile peer ---- */

static void poke_bytes(struct run *s, size_t off, const uint8_t *bytes, size_t n)
{
	if (off + n > LENS_END)
		n = LENS_END - off;
	if (memcmp(g_raw + off, bytes, n) != 0)
		s->poked = 1;
	memcpy(g_raw + off, bytes, n);
}

/* Sets a position or length field relative to another one: the values a bounds check must catch. */
static void poke_relative(struct run *s, uint8_t which, int8_t delta)
{
	uint64_t head = raw_get64(SHMCHAN_OFF_HEAD), tail = raw_get64(SHMCHAN_OFF_TAIL), v;
	size_t off;

	switch (which % 6) {
	case 0: off = SHMCHAN_OFF_HEAD; v = tail + CAP + (uint64_t)(int64_t)delta; break;
	case 1: off = SHMCHAN_OFF_HEAD; v = head + (uint64_t)(int64_t)delta; break;
	case 2: off = SHMCHAN_OFF_TAIL; v = head + (uint64_t)(int64_t)delta; break;
	case 3: off = SHMCHAN_OFF_TAIL; v = tail + (uint64_t)(int64_t)delta; break;
	case 4: off = SHMCHAN_LENS_OFFSET + 8u * ((uint8_t)delta % CAP); v = SLOT + (uint64_t)(which / 6); break;
	default: off = SHMCHAN_LENS_OFFSET + 8u * ((uint8_t)delta % CAP); v = UINT64_MAX - (uint64_t)(which / 6); break;
	}
	if (raw_get64(off) != v)
		s->poked = 1;
	raw_put64(off, v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size};
	struct run s;
	int ops = 0;

	memset(&s, 0, sizeof(s));
	memcpy(g_raw, g_pristine, g_size);
	if (open_handles(&s) != 0)
		return 0;
	while (in.n && ops++ < MAX_OPS) {
		uint8_t op = u8(&in);
		switch (op % 16) {
		case 0: op_reserve(&s, u8(&in) % (SLOT + 8)); break;
		case 1: op_commit(&s, u8(&in) % (SLOT + 8)); break;
		case 2: op_abort(&s); break;
		case 3: op_send(&s, u8(&in) % (SLOT + 8)); break;
		case 4: op_peek(&s); break;
		case 5: op_peek_batch(&s, 1u + u8(&in) % 12u); break;
		case 6: {
			uint8_t k = u8(&in);
			/* mostly a position near the reader's window, sometimes any 64-bit value */
			uint64_t pos = k < 240 ? s.r_tail + (uint64_t)((int64_t)(int8_t)(k - 120) / 8) : u64(&in);
			op_release(&s, pos);
			break;
		}
		case 7: op_recv(&s, u8(&in) % (SLOT + 8)); break;
		case 8: {
			uint8_t bytes[8];
			size_t off = (size_t)(u8(&in) | (u8(&in) << 8)) % LENS_END;
			size_t n = 1u + u8(&in) % 8u;
			for (size_t i = 0; i < n; i++)
				bytes[i] = u8(&in);
			poke_bytes(&s, off, bytes, n);
			break;
		}
		case 9: {
			uint8_t which = u8(&in);
			poke_relative(&s, which, (int8_t)u8(&in));
			break;
		}
		case 10: writer_close(&s); writer_attach(&s); break;
		case 11: reader_close(&s); reader_attach(&s); break;
		case 12: writer_close(&s); break;
		case 13: {
			struct shmchan_stats st;
			FUZZ_CHECK(shmchan_stats(s.wch, &st) == 0);
			FUZZ_CHECK(shmchan_stats(s.rch, &st) == 0);
			break;
		}
		case 14:
			close_handles(&s);
			memset(&s, 0, sizeof(s));
			s.poked = 1; /* the model does not follow a reopen of damaged bytes */
			if (open_handles(&s) != 0)
				return 0;
			break;
		default:
			if (!s.w && !s.w_poisoned)
				writer_attach(&s);
			break;
		}
	}
	close_handles(&s);
	return 0;
}
