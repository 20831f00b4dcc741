/* SPDX-License-Identifier: MIT */
/* The ring in one process: FIFO order over wraps and position boundaries, batches, out-of-order release, reserve/commit/abort rules, pinning and statistics. */
#include "testutil.h"

#include "layout.h"

struct ring {
	shmchan_channel *ch;
	shmchan_writer *w;
	shmchan_reader *r;
};

/* Creates a channel; if start is not 0, puts head = tail = start into the header before attaching. */
static struct ring ring_open(const char *tag, uint64_t slot, uint32_t cap, uint64_t start)
{
	struct shmchan_config cfg = t_config(slot, cap);
	struct ring g;

	CHECK_RC(shmchan_create(t_name(tag), &cfg, &g.ch, NULL), 0);
	if (start) {
		struct t_map m = t_map_object(t_name(tag));
		t_put64(&m, SHMCHAN_OFF_HEAD, start);
		t_put64(&m, SHMCHAN_OFF_TAIL, start);
		t_unmap(&m);
	}
	CHECK_RC(shmchan_writer_attach(g.ch, &g.w), 0);
	CHECK_RC(shmchan_reader_attach(g.ch, &g.r), 0);
	return g;
}

static void ring_close(struct ring *g)
{
	CHECK_RC(shmchan_channel_unlink(g->ch), 0);
	shmchan_close(g->ch);
}

static uint8_t pattern(uint64_t seq, uint64_t i)
{
	return (uint8_t)((seq * 131u) ^ (i * 7u) ^ (seq >> 8));
}

static uint64_t len_of(uint64_t seq, uint64_t slot)
{
	return (seq * 2654435761u) % (slot + 1); /* 0 .. slot */
}

static void send_seq(shmchan_writer *w, uint64_t seq, uint64_t slot)
{
	uint8_t buf[512];
	uint64_t n = len_of(seq, slot);

	CHECK(n <= sizeof(buf));
	for (uint64_t i = 0; i < n; i++)
		buf[i] = pattern(seq, i);
	CHECK_RC(shmchan_send(w, (const char *)buf, n, 0), 0);
}

static void check_seq(const uint8_t *data, uint64_t len, uint64_t seq, uint64_t slot)
{
	CHECK_MSG(len == len_of(seq, slot), "seq %llu: length %llu, wanted %llu", (unsigned long long)seq,
		  (unsigned long long)len, (unsigned long long)len_of(seq, slot));
	for (uint64_t i = 0; i < len; i++)
		CHECK_MSG(data[i] == pattern(seq, i), "seq %llu: byte %llu differs", (unsigned long long)seq,
			  (unsigned long long)i);
}

/* FIFO order and content over many wraps, with varying lengths and interleavings, through recv and peek. */
static void fifo_many_wraps(void)
{
	const uint64_t slot = 256;
	const uint32_t cap = 8;
	struct ring g = ring_open("fifo", slot, cap, 0);
	uint64_t sent = 0, got = 0, rnd = 12345;
	uint8_t buf[256];

	while (got < 20000) {
		rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t burst = 1 + (rnd >> 33) % cap;
		while (burst-- && sent - got < cap)
			send_seq(g.w, sent++, slot);
		if (sent - got == cap)
			CHECK_RC(shmchan_send(g.w, "x", 1, 0), -EAGAIN);
		uint64_t take = 1 + (rnd >> 45) % (sent - got);
		while (take--) {
			if (got % 2) {
				struct shmchan_msg m;
				CHECK_RC(shmchan_peek(g.r, 0, &m), 0);
				CHECK(m.pos == got);
				CHECK(m.slot == (uint32_t)(got % cap));
				CHECK(m.data == shmchan_slot_address(g.ch, m.slot));
				check_seq(m.data, m.len, got, slot);
				CHECK_RC(shmchan_release(g.r, m.pos), 0);
			} else {
				uint64_t len;
				CHECK_RC(shmchan_recv(g.r, buf, sizeof(buf), &len, 0), 0);
				check_seq(buf, len, got, slot);
			}
			got++;
		}
		if (sent == got) {
			uint64_t len;
			CHECK_RC(shmchan_recv(g.r, buf, sizeof(buf), &len, 0), -EAGAIN);
		}
	}
	ring_close(&g);
}

/*
 * Free-running positions across a boundary: head = tail = start - 3 before anything attaches, then
 * capacity * 3 messages, sent and received in bursts through recv, peek/release and peek_batch.
 */
static void positions_across(uint64_t start)
{
	const uint32_t cap = 4;
	const uint64_t slot = 64;
	struct ring g = ring_open("wrap", slot, cap, start);
	struct shmchan_stats st;
	uint64_t pos = start;
	uint8_t buf[64];
	int rc;

	for (int round = 0; round < 3; round++) {
		for (uint32_t i = 0; i < cap; i++)
			send_seq(g.w, pos + i, slot);
		CHECK_RC(shmchan_send(g.w, "x", 1, 0), -EAGAIN);
		for (uint32_t i = 0; i < cap; i++, pos++) {
			struct shmchan_msg m;
			uint64_t len;
			if (round == 0) {
				rc = shmchan_recv(g.r, buf, sizeof(buf), &len, 0);
				CHECK_MSG(rc == 0, "recv of position %#llx returned %d (%s)", (unsigned long long)pos, rc,
					  shmchan_strerror(rc));
				check_seq(buf, len, pos, slot);
			} else {
				CHECK_RC(shmchan_peek(g.r, 0, &m), 0);
				CHECK_MSG(m.pos == pos, "peek gave position %#llx, wanted %#llx", (unsigned long long)m.pos,
					  (unsigned long long)pos);
				CHECK(m.slot == (uint32_t)(pos & (cap - 1)));
				check_seq(m.data, m.len, pos, slot);
				rc = shmchan_release(g.r, m.pos);
				CHECK_MSG(rc == 0, "release of position %#llx returned %d (%s)", (unsigned long long)pos, rc,
					  shmchan_strerror(rc));
			}
		}
	}
	/* a batch straddling the boundary region once more, released out of order */
	for (uint32_t i = 0; i < cap; i++)
		send_seq(g.w, pos + i, slot);
	struct shmchan_msg b[8];
	CHECK_RC(shmchan_peek_batch(g.r, b, 8, 0), (int)cap);
	for (int i = (int)cap - 1; i >= 0; i--) {
		CHECK(b[i].pos == pos + (uint64_t)i);
		rc = shmchan_release(g.r, b[i].pos);
		CHECK_MSG(rc == 0, "release of position %#llx returned %d (%s)", (unsigned long long)b[i].pos, rc,
			  shmchan_strerror(rc));
	}
	pos += cap;
	CHECK_RC(shmchan_stats(g.ch, &st), 0);
	CHECK(st.head == pos && st.tail == pos);
	CHECK(shmchan_reader_outstanding(g.r) == 0);
	ring_close(&g);
}

static void positions_across_2_32(void)
{
	positions_across((1ull << 32) - 3);
}

static void positions_across_2_64(void)
{
	positions_across(0 - 3ull);
}

/* peek_batch returns what is available, up to max; never waits for more than the first. */
static void peek_batch_limits(void)
{
	struct ring g = ring_open("batch", 32, 8, 0);
	struct shmchan_msg b[16];

	CHECK_RC(shmchan_peek_batch(g.r, b, 4, 0), -EAGAIN);
	CHECK_RC(shmchan_peek_batch(g.r, b, 0, 0), -EINVAL);
	CHECK_RC(shmchan_peek_batch(g.r, NULL, 4, 0), -EINVAL);
	CHECK_RC(shmchan_peek_batch(NULL, b, 4, 0), -EINVAL);
	for (uint64_t i = 0; i < 5; i++)
		send_seq(g.w, i, 32);
	CHECK_RC(shmchan_peek_batch(g.r, b, 3, 0), 3);
	for (uint64_t i = 0; i < 3; i++) {
		CHECK(b[i].pos == i);
		check_seq(b[i].data, b[i].len, i, 32);
	}
	CHECK(shmchan_reader_outstanding(g.r) == 3);
	CHECK_RC(shmchan_peek_batch(g.r, b + 3, 8, T_MS(100)), 2); /* 2 available: no wait for more */
	CHECK(b[3].pos == 3 && b[4].pos == 4);
	CHECK_RC(shmchan_peek_batch(g.r, b, 8, 0), -EAGAIN);
	for (uint64_t i = 0; i < 5; i++)
		CHECK_RC(shmchan_release(g.r, i), 0);
	for (uint64_t i = 5; i < 13; i++)
		send_seq(g.w, i, 32);
	CHECK_RC(shmchan_peek_batch(g.r, b, 16, 0), 8);
	for (uint64_t i = 0; i < 8; i++)
		CHECK(b[i].pos == 5 + i && b[i].slot == (uint32_t)((5 + i) % 8));
	CHECK_RC(shmchan_peek_batch(g.r, b + 8, 16, 0), -SHMCHAN_EPINNED);
	for (uint64_t i = 0; i < 8; i++)
		CHECK_RC(shmchan_release(g.r, b[i].pos), 0);
	ring_close(&g);
}

/* Releases out of order: the tail moves only when the oldest outstanding message is released. */
static void out_of_order_release(void)
{
	struct ring g = ring_open("ooo", 32, 4, 0);
	struct shmchan_msg m[3], extra;
	struct shmchan_stats st;
	void *data;

	for (uint64_t i = 0; i < 4; i++)
		send_seq(g.w, i, 32);
	CHECK_RC(shmchan_reserve(g.w, 1, 0, &data, NULL), -EAGAIN);
	for (int i = 0; i < 3; i++)
		CHECK_RC(shmchan_peek(g.r, 0, &m[i]), 0);
	CHECK_RC(shmchan_release(g.r, m[1].pos), 0);
	CHECK_RC(shmchan_stats(g.ch, &st), 0);
	CHECK(st.tail == 0 && st.messages_read == 0);
	CHECK_RC(shmchan_reserve(g.w, 1, 0, &data, NULL), -EAGAIN);
	CHECK_RC(shmchan_release(g.r, m[1].pos), -EINVAL); /* released twice */
	CHECK_RC(shmchan_release(g.r, m[2].pos), 0);
	CHECK_RC(shmchan_stats(g.ch, &st), 0);
	CHECK(st.tail == 0);
	CHECK_RC(shmchan_reserve(g.w, 1, 0, &data, NULL), -EAGAIN);
	CHECK(shmchan_reader_outstanding(g.r) == 3);
	/* the released messages stay readable until the oldest goes back */
	check_seq(m[1].data, m[1].len, 1, 32);
	check_seq(m[2].data, m[2].len, 2, 32);
	CHECK_RC(shmchan_release(g.r, m[0].pos), 0);
	CHECK_RC(shmchan_stats(g.ch, &st), 0);
	CHECK(st.tail == 3 && st.messages_read == 3);
	CHECK(shmchan_reader_outstanding(g.r) == 0);
	for (uint64_t i = 4; i < 7; i++)
		send_seq(g.w, i, 32);
	CHECK_RC(shmchan_send(g.w, "x", 1, 0), -EAGAIN);
	for (uint64_t i = 3; i < 7; i++) {
		CHECK_RC(shmchan_peek(g.r, 0, &extra), 0);
		CHECK(extra.pos == i);
		check_seq(extra.data, extra.len, i, 32);
		CHECK_RC(shmchan_release(g.r, extra.pos), 0);
	}
	ring_close(&g);
}

/* Releasing a position that is not outstanding is -EINVAL and changes nothing. */
static void release_invalid_positions(void)
{
	struct ring g = ring_open("relinv", 32, 4, 0);
	struct shmchan_msg m;
	struct shmchan_stats st;

	CHECK_RC(shmchan_release(g.r, 0), -EINVAL); /* nothing peeked */
	send_seq(g.w, 0, 32);
	send_seq(g.w, 1, 32);
	CHECK_RC(shmchan_release(g.r, 0), -EINVAL); /* committed but never peeked */
	CHECK_RC(shmchan_peek(g.r, 0, &m), 0);
	CHECK_RC(shmchan_release(g.r, 1), -EINVAL); /* committed, not peeked */
	CHECK_RC(shmchan_release(g.r, 5), -EINVAL);
	CHECK_RC(shmchan_release(g.r, UINT64_MAX), -EINVAL);
	CHECK_RC(shmchan_release(NULL, 0), -EINVAL);
	CHECK_RC(shmchan_release(g.r, 0), 0);
	CHECK_RC(shmchan_release(g.r, 0), -EINVAL); /* twice */
	CHECK_RC(shmchan_stats(g.ch, &st), 0);
	CHECK(st.tail == 1 && st.messages_read == 1);
	CHECK_RC(shmchan_peek(g.r, 0, &m), 0);
	CHECK(m.pos == 1);
	CHECK_RC(shmchan_release(g.r, 1), 0);
	ring_close(&g);
}

/* recv into a buffer too small: -EMSGSIZE with the length, and the message stays for the next recv. */
static void recv_small_buffer(void)
{
	struct ring g = ring_open("small", 128, 4, 0);
	struct shmchan_stats st;
	uint8_t big[128], small[10];
	uint64_t len = 0;

	send_seq(g.w, 7, 128); /* length len_of(7, 128) */
	const uint64_t want = len_of(7, 128);
	CHECK(want > sizeof(small));
	CHECK_RC(shmchan_recv(g.r, small, sizeof(small), &len, 0), -EMSGSIZE);
	CHECK(len == want);
	CHECK(shmchan_reader_outstanding(g.r) == 0);
	CHECK_RC(shmchan_recv(g.r, NULL, 0, &len, 0), -EMSGSIZE);
	CHECK(len == want);
	CHECK_RC(shmchan_recv(g.r, small, sizeof(small), NULL, 0), -EINVAL);
	CHECK_RC(shmchan_recv(g.r, NULL, 5, &len, 0), -EINVAL);
	len = 0;
	CHECK_RC(shmchan_recv(g.r, big, sizeof(big), &len, 0), 0);
	check_seq(big, len, 7, 128);
	CHECK_RC(shmchan_recv(g.r, big, sizeof(big), &len, 0), -EAGAIN);
	CHECK_RC(shmchan_stats(g.ch, &st), 0);
	CHECK(st.messages_read == 1);
	CHECK_MSG(st.bytes_read == want, "bytes_read %llu, wanted %llu", (unsigned long long)st.bytes_read,
		  (unsigned long long)want);
	/* exactly fitting, and zero-length messages into no buffer */
	send_seq(g.w, 7, 128);
	CHECK_RC(shmchan_recv(g.r, big, want, &len, 0), 0);
	CHECK(len == want);
	CHECK_RC(shmchan_send(g.w, NULL, 0, 0), 0);
	CHECK_RC(shmchan_recv(g.r, NULL, 0, &len, 0), 0);
	CHECK(len == 0);
	CHECK_RC(shmchan_send(g.w, NULL, 5, 0), -EINVAL);
	ring_close(&g);
}

/* reserve/commit/abort rules: aborted messages are never seen; short commits; size and state errors. */
static void reserve_commit_abort(void)
{
	struct ring g = ring_open("rca", 100, 4, 0);
	struct shmchan_stats st;
	struct shmchan_msg m;
	uint8_t buf[100];
	uint64_t len;
	uint32_t slot = 99;
	void *data, *data2;

	/* abort: never visible, does not use a position */
	CHECK_RC(shmchan_reserve(g.w, 50, 0, &data, &slot), 0);
	CHECK(slot == 0 && data == shmchan_slot_address(g.ch, 0));
	memset(data, 0xee, 50);
	CHECK_RC(shmchan_abort(g.w), 0);
	CHECK_RC(shmchan_abort(g.w), -ENOENT);
	CHECK_RC(shmchan_commit(g.w, 0), -ENOENT);
	CHECK_RC(shmchan_recv(g.r, buf, sizeof(buf), &len, 0), -EAGAIN);
	CHECK_RC(shmchan_send(g.w, "real", 4, 0), 0);
	CHECK_RC(shmchan_peek(g.r, 0, &m), 0);
	CHECK(m.pos == 0 && m.len == 4 && memcmp(m.data, "real", 4) == 0);
	CHECK_RC(shmchan_release(g.r, m.pos), 0);

	/* commit fewer bytes than reserved */
	CHECK_RC(shmchan_reserve(g.w, 100, 0, &data, NULL), 0);
	memset(data, 'a', 100);
	CHECK_RC(shmchan_commit(g.w, 40), 0);
	CHECK_RC(shmchan_recv(g.r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 40 && buf[0] == 'a' && buf[39] == 'a');
	/* commit of zero bytes is a zero-length message */
	CHECK_RC(shmchan_reserve(g.w, 10, 0, &data, NULL), 0);
	CHECK_RC(shmchan_commit(g.w, 0), 0);
	CHECK_RC(shmchan_recv(g.r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 0);

	/* commit more than reserved: refused, and the reservation stays open */
	CHECK_RC(shmchan_reserve(g.w, 10, 0, &data, NULL), 0);
	CHECK_RC(shmchan_commit(g.w, 11), -EMSGSIZE);
	/* a second reserve before commit */
	CHECK_RC(shmchan_reserve(g.w, 10, 0, &data2, NULL), -EALREADY);
	memcpy(data, "0123456789", 10);
	CHECK_RC(shmchan_commit(g.w, 10), 0);
	CHECK_RC(shmchan_recv(g.r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 10 && memcmp(buf, "0123456789", 10) == 0);

	/* larger than slot_size */
	CHECK_RC(shmchan_reserve(g.w, 101, 0, &data, NULL), -EMSGSIZE);
	CHECK_RC(shmchan_reserve(g.w, UINT64_MAX, 0, &data, NULL), -EMSGSIZE);
	CHECK_RC(shmchan_send(g.w, (const char *)buf, 101, 0), -EMSGSIZE);
	CHECK_RC(shmchan_reserve(g.w, 100, 0, &data, NULL), 0); /* exactly slot_size */
	CHECK_RC(shmchan_commit(g.w, 100), 0);
	CHECK_RC(shmchan_recv(g.r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 100);
	CHECK_RC(shmchan_reserve(g.w, 1, 0, NULL, NULL), -EINVAL);
	CHECK_RC(shmchan_reserve(NULL, 1, 0, &data, NULL), -EINVAL);
	CHECK_RC(shmchan_commit(NULL, 1), -EINVAL);
	CHECK_RC(shmchan_abort(NULL), -EINVAL);

	/* a reservation open at writer close is aborted: the reader sees the end, not the message */
	CHECK_RC(shmchan_reserve(g.w, 5, 0, &data, NULL), 0);
	memcpy(data, "ghost", 5);
	shmchan_writer_close(g.w);
	CHECK_RC(shmchan_recv(g.r, buf, sizeof(buf), &len, 0), -SHMCHAN_EENDED);
	CHECK_RC(shmchan_stats(g.ch, &st), 0);
	CHECK(st.aborts == 2);
	CHECK(st.messages_written == 5 && st.head == 5);
	ring_close(&g);
}

/* Every slot peeked and unreleased: peek reports EPINNED at once (even with an infinite timeout). */
static void pinned(void)
{
	struct ring g = ring_open("pin", 16, 4, 0);
	struct shmchan_msg m[4], x;
	int64_t t0;

	for (uint64_t i = 0; i < 4; i++)
		send_seq(g.w, i, 16);
	for (int i = 0; i < 4; i++)
		CHECK_RC(shmchan_peek(g.r, 0, &m[i]), 0);
	CHECK_RC(shmchan_peek(g.r, 0, &x), -SHMCHAN_EPINNED);
	t0 = t_now_ns();
	CHECK_RC(shmchan_peek(g.r, -1, &x), -SHMCHAN_EPINNED);
	CHECK_RC(shmchan_peek(g.r, T_MS(1000), &x), -SHMCHAN_EPINNED);
	CHECK(t_now_ns() - t0 < T_MS(100));
	CHECK_RC(shmchan_send(g.w, "x", 1, 0), -EAGAIN);
	/* releasing a later one does not unpin */
	CHECK_RC(shmchan_release(g.r, m[2].pos), 0);
	CHECK_RC(shmchan_peek(g.r, 0, &x), -SHMCHAN_EPINNED);
	CHECK_RC(shmchan_release(g.r, m[0].pos), 0);
	CHECK_RC(shmchan_peek(g.r, 0, &x), -EAGAIN); /* unpinned, just empty */
	send_seq(g.w, 4, 16);
	CHECK_RC(shmchan_peek(g.r, 0, &x), 0);
	CHECK(x.pos == 4);
	check_seq(x.data, x.len, 4, 16);
	ring_close(&g);
}

/* Statistics count what was written, read, waited for and aborted. */
static void stats_counts(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	struct shmchan_stats st;
	shmchan_channel *ch;
	shmchan_writer *w;
	shmchan_reader *r;
	uint8_t buf[64];
	uint64_t len;
	void *data;

	CHECK_RC(shmchan_create(t_name("stats"), &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.head == 0 && st.tail == 0 && st.messages_written == 0 && st.messages_read == 0);
	CHECK(st.writer_state == 0 && st.reader_state == 0 && st.writer_pid == 0 && st.reader_pid == 0);
	CHECK(st.writer_alive == 0 && st.reader_alive == 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.writer_state == 1 && st.reader_state == 1);
	CHECK(st.writer_pid == (uint32_t)getpid() && st.reader_pid == (uint32_t)getpid());
	CHECK(st.writer_alive == 1 && st.reader_alive == 1);

	memset(buf, 1, sizeof(buf));
	CHECK_RC(shmchan_send(w, (const char *)buf, 10, 0), 0);
	CHECK_RC(shmchan_send(w, (const char *)buf, 20, 0), 0);
	CHECK_RC(shmchan_send(w, (const char *)buf, 30, 0), 0);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.messages_written == 3 && st.bytes_written == 60 && st.head == 3);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.messages_read == 2 && st.bytes_read == 30 && st.tail == 2);
	CHECK(st.full_waits == 0 && st.empty_waits == 0 && st.aborts == 0);

	/* full: two more fit (4 slots, 1 in use), then every failing reserve counts */
	CHECK_RC(shmchan_send(w, (const char *)buf, 1, 0), 0);
	CHECK_RC(shmchan_send(w, (const char *)buf, 1, 0), 0);
	CHECK_RC(shmchan_send(w, (const char *)buf, 1, 0), 0);
	CHECK_RC(shmchan_send(w, (const char *)buf, 1, 0), -EAGAIN);
	CHECK_RC(shmchan_send(w, (const char *)buf, 1, T_MS(1)), -ETIMEDOUT);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK_MSG(st.full_waits == 2, "full_waits %llu", (unsigned long long)st.full_waits);
	/* drain, then empty waits */
	for (int i = 0; i < 4; i++)
		CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), -EAGAIN);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, T_MS(1)), -ETIMEDOUT);
	CHECK_RC(shmchan_reserve(w, 5, 0, &data, NULL), 0);
	CHECK_RC(shmchan_abort(w), 0);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK_MSG(st.empty_waits == 2, "empty_waits %llu", (unsigned long long)st.empty_waits);
	CHECK(st.aborts == 1);
	CHECK(st.messages_written == 6 && st.bytes_written == 63);
	CHECK(st.messages_read == 6 && st.bytes_read == 63);
	CHECK(st.head == 6 && st.tail == 6);

	/* counters survive a new writer and reader: they continue from the header */
	shmchan_writer_close(w);
	shmchan_reader_close(r);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.writer_state == 2 && st.reader_state == 2 && st.writer_alive == 0 && st.reader_alive == 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	CHECK_RC(shmchan_send(w, (const char *)buf, 7, 0), 0);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.messages_written == 7 && st.bytes_written == 70 && st.messages_read == 7 && st.bytes_read == 70);
	CHECK(st.aborts == 1 && st.full_waits == 2 && st.empty_waits == 2);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* bytes_read counts released messages only, like messages_read (the header says "released by readers"). */
static void stats_bytes_read_counts_released_only(void)
{
	struct ring g = ring_open("bread", 64, 4, 0);
	struct shmchan_stats st;
	struct shmchan_msg a, b;
	uint8_t buf[64];

	memset(buf, 3, sizeof(buf));
	CHECK_RC(shmchan_send(g.w, (const char *)buf, 10, 0), 0);
	CHECK_RC(shmchan_send(g.w, (const char *)buf, 20, 0), 0);
	CHECK_RC(shmchan_peek(g.r, 0, &a), 0);
	CHECK_RC(shmchan_peek(g.r, 0, &b), 0);
	CHECK_RC(shmchan_release(g.r, a.pos), 0);
	CHECK_RC(shmchan_stats(g.ch, &st), 0);
	CHECK(st.messages_read == 1);
	CHECK_MSG(st.bytes_read == 10, "1 message of 10 bytes released, 1 of 20 still held: bytes_read %llu",
		  (unsigned long long)st.bytes_read);
	CHECK_RC(shmchan_release(g.r, b.pos), 0);
	CHECK_RC(shmchan_stats(g.ch, &st), 0);
	CHECK(st.messages_read == 2 && st.bytes_read == 30);
	ring_close(&g);
}

/* A reader closed with unreleased messages hands them to the next reader (at least once); the writer end is not sticky. */
static void reader_and_writer_reattach(void)
{
	struct ring g = ring_open("reatt", 32, 4, 0);
	struct shmchan_msg m;
	uint8_t buf[32];
	uint64_t len;

	for (uint64_t i = 0; i < 3; i++)
		send_seq(g.w, i, 32);
	CHECK_RC(shmchan_recv(g.r, buf, sizeof(buf), &len, 0), 0);
	CHECK_RC(shmchan_peek(g.r, 0, &m), 0);
	CHECK_RC(shmchan_peek(g.r, 0, &m), 0);
	shmchan_reader_close(g.r);
	CHECK_RC(shmchan_reader_attach(g.ch, &g.r), 0);
	CHECK(shmchan_reader_outstanding(g.r) == 0);
	for (uint64_t i = 1; i < 3; i++) {
		CHECK_RC(shmchan_peek(g.r, 0, &m), 0);
		CHECK(m.pos == i);
		check_seq(m.data, m.len, i, 32);
		CHECK_RC(shmchan_release(g.r, m.pos), 0);
	}
	shmchan_writer_close(g.w);
	CHECK_RC(shmchan_peek(g.r, 0, &m), -SHMCHAN_EENDED);
	CHECK_RC(shmchan_peek(g.r, -1, &m), -SHMCHAN_EENDED);
	CHECK_RC(shmchan_writer_attach(g.ch, &g.w), 0);
	CHECK_RC(shmchan_peek(g.r, 0, &m), -EAGAIN);
	send_seq(g.w, 3, 32);
	CHECK_RC(shmchan_peek(g.r, 0, &m), 0);
	CHECK(m.pos == 3);
	CHECK_RC(shmchan_release(g.r, m.pos), 0);
	CHECK_RC(shmchan_peek(NULL, 0, &m), -EINVAL);
	CHECK_RC(shmchan_peek(g.r, 0, NULL), -EINVAL);
	CHECK(shmchan_reader_outstanding(NULL) == 0);
	shmchan_writer_close(NULL);
	shmchan_reader_close(NULL);
	ring_close(&g);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("fifo_many_wraps", fifo_many_wraps, 20);
	fails += t_case("positions_across_2_32", positions_across_2_32, 10);
	fails += t_case("positions_across_2_64", positions_across_2_64, 10);
	fails += t_case("peek_batch_limits", peek_batch_limits, 10);
	fails += t_case("out_of_order_release", out_of_order_release, 10);
	fails += t_case("release_invalid_positions", release_invalid_positions, 10);
	fails += t_case("recv_small_buffer", recv_small_buffer, 10);
	fails += t_case("reserve_commit_abort", reserve_commit_abort, 10);
	fails += t_case("pinned", pinned, 10);
	fails += t_case("stats_counts", stats_counts, 10);
	fails += t_case("stats_bytes_read_counts_released_only", stats_bytes_read_counts_released_only, 10);
	fails += t_case("reader_and_writer_reattach", reader_and_writer_reattach, 10);
	return t_done(fails);
}
