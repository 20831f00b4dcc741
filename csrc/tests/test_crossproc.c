/* SPDX-License-Identifier: MIT */
/* Two real processes: a million small messages and 200 1080p frames arrive complete, in order, exactly once. */
#include "testutil.h"

#define SMALL_COUNT 1000000u
#define SMALL_CAP 1024u
#define SMALL_SLOT 64u
#define FRAME_BYTES 6220800u /* 1920 * 1080 * 3 */
#define FRAME_COUNT 200u
#define FRAME_CAP 4u

static uint32_t fnv1a(uint32_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

static uint64_t small_len(uint32_t seq)
{
	return 8 + (uint64_t)((seq * 2654435761u) >> 7) % 57; /* 8 .. 64 */
}

static uint8_t small_byte(uint32_t seq, uint64_t i)
{
	return (uint8_t)(seq * 29u + i * 131u + (seq >> 11));
}

/* [0,4) sequence number, [4,8) FNV-1a of the length, the sequence number and bytes [8,len). */
static uint32_t small_sum(uint32_t seq, const uint8_t *msg, uint64_t len)
{
	uint32_t h = fnv1a(2166136261u, (const uint8_t *)&len, sizeof(len));
	h = fnv1a(h, (const uint8_t *)&seq, sizeof(seq));
	return fnv1a(h, msg + 8, (size_t)(len - 8));
}

static void small_fill(uint32_t seq, uint8_t *msg, uint64_t len)
{
	uint32_t sum;

	memcpy(msg, &seq, 4);
	for (uint64_t i = 8; i < len; i++)
		msg[i] = small_byte(seq, i);
	sum = small_sum(seq, msg, len);
	memcpy(msg + 4, &sum, 4);
}

static void small_verify(uint32_t want, const uint8_t *msg, uint64_t len)
{
	uint32_t seq, sum;

	CHECK_MSG(len >= 8 && len <= SMALL_SLOT, "message %u: length %llu", want, (unsigned long long)len);
	memcpy(&seq, msg, 4);
	memcpy(&sum, msg + 4, 4);
	CHECK_MSG(seq == want, "expected message %u, got %u (lost, duplicated or reordered)", want, seq);
	CHECK_MSG(len == small_len(seq), "message %u: length %llu, wanted %llu", seq, (unsigned long long)len,
		  (unsigned long long)small_len(seq));
	CHECK_MSG(sum == small_sum(seq, msg, len), "message %u: checksum mismatch", seq);
	for (uint64_t i = 8; i < len; i++)
		CHECK_MSG(msg[i] == small_byte(seq, i), "message %u: byte %llu", seq, (unsigned long long)i);
}

static void small_producer(const char *name)
{
	shmchan_channel *ch;
	shmchan_writer *w;
	uint8_t buf[SMALL_SLOT];

	CHECK_RC(shmchan_open(name, T_MS(2000), &ch, NULL), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	for (uint32_t seq = 0; seq < SMALL_COUNT; seq++) {
		uint64_t len = small_len(seq);
		if (seq % 2) {
			void *slot;
			CHECK_RC(shmchan_reserve(w, SMALL_SLOT, T_MS(10000), &slot, NULL), 0);
			small_fill(seq, slot, len); /* straight into the slot: zero copy */
			CHECK_RC(shmchan_commit(w, len), 0);
		} else {
			small_fill(seq, buf, len);
			CHECK_RC(shmchan_send(w, (const char *)buf, len, T_MS(10000)), 0);
		}
	}
	shmchan_writer_close(w);
	shmchan_close(ch);
}

static void small_consumer(const char *name, int ready_fd)
{
	shmchan_channel *ch;
	shmchan_reader *r;
	struct shmchan_msg batch[32];
	uint8_t buf[SMALL_SLOT];
	uint32_t next = 0;
	uint64_t len;

	CHECK_RC(shmchan_open(name, T_MS(2000), &ch, NULL), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	t_put_u64(ready_fd, 1);
	while (next < SMALL_COUNT) {
		int mode = (int)((next / 1000) % 3);
		if (mode == 0) {
			CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, T_MS(10000)), 0);
			small_verify(next++, buf, len);
		} else if (mode == 1) {
			struct shmchan_msg m;
			CHECK_RC(shmchan_peek(r, T_MS(10000), &m), 0);
			CHECK(m.pos == next);
			small_verify(next++, m.data, m.len);
			CHECK_RC(shmchan_release(r, m.pos), 0);
		} else {
			int n = shmchan_peek_batch(r, batch, 32, T_MS(10000));
			CHECK_MSG(n >= 1 && n <= 32, "peek_batch returned %d (%s)", n, shmchan_strerror(n));
			for (int i = 0; i < n; i++) {
				CHECK(batch[i].pos == next);
				small_verify(next++, batch[i].data, batch[i].len);
			}
			for (int i = n - 1; i >= 0; i--) /* out of order on purpose */
				CHECK_RC(shmchan_release(r, batch[i].pos), 0);
		}
	}
	/* nothing more, and the writer's close is seen */
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, T_MS(10000)), -SHMCHAN_EENDED);
	struct shmchan_stats st;
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.messages_written == SMALL_COUNT && st.messages_read == SMALL_COUNT);
	CHECK(st.head == SMALL_COUNT && st.tail == SMALL_COUNT);
	shmchan_close(ch);
}

static void run_pair(const char *name, void (*producer)(const char *), void (*consumer)(const char *, int))
{
	int fds[2];
	uint64_t v;
	int rc_c, rc_p;

	t_pipe(fds);
	pid_t c = t_fork();
	if (c == 0) {
		close(fds[0]);
		consumer(name, fds[1]);
		t_peer_exit(0);
	}
	close(fds[1]);
	CHECK_RC(t_get_u64(fds[0], &v, 5000), 0); /* the reader is attached before the first message */
	pid_t p = t_fork();
	if (p == 0) {
		producer(name);
		t_peer_exit(0);
	}
	rc_p = t_wait(p, 50000);
	rc_c = t_wait(c, 10000);
	CHECK_MSG(rc_p == 0 && rc_c == 0, "producer exit %d, consumer exit %d", rc_p, rc_c);
}

static void million_small_messages(void)
{
	struct shmchan_config cfg = t_config(SMALL_SLOT, SMALL_CAP);
	shmchan_channel *ch;
	char name[128];
	int64_t t0 = t_now_ns();

	t_name_buf(name, sizeof(name), "small");
	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	run_pair(name, small_producer, small_consumer);
	printf("  %u messages in %.0f ms\n", SMALL_COUNT, t_ms(t_now_ns() - t0));
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* ---- frames ---- */

static uint64_t frame_word(uint64_t seq, uint64_t i)
{
	return (seq + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xD6E8FEB86659FD93ull);
}

static void frame_producer(const char *name)
{
	shmchan_channel *ch;
	shmchan_writer *w;

	CHECK_RC(shmchan_open(name, T_MS(2000), &ch, NULL), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	for (uint64_t seq = 0; seq < FRAME_COUNT; seq++) {
		void *slot;
		CHECK_RC(shmchan_reserve(w, FRAME_BYTES, T_MS(10000), &slot, NULL), 0);
		uint64_t *p = slot;
		for (uint64_t i = 0; i < FRAME_BYTES / 8; i++)
			p[i] = frame_word(seq, i);
		CHECK_RC(shmchan_commit(w, FRAME_BYTES), 0);
	}
	shmchan_writer_close(w);
	shmchan_close(ch);
}

static void frame_consumer(const char *name, int ready_fd)
{
	shmchan_channel *ch;
	shmchan_reader *r;
	struct shmchan_msg m;

	CHECK_RC(shmchan_open(name, T_MS(2000), &ch, NULL), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	t_put_u64(ready_fd, 1);
	for (uint64_t seq = 0; seq < FRAME_COUNT; seq++) {
		CHECK_RC(shmchan_peek(r, T_MS(10000), &m), 0);
		CHECK(m.pos == seq && m.len == FRAME_BYTES);
		const uint64_t *p = m.data;
		uint64_t bad = 0;
		for (uint64_t i = 0; i < FRAME_BYTES / 8; i++)
			bad |= p[i] ^ frame_word(seq, i);
		if (bad) {
			for (uint64_t i = 0; i < FRAME_BYTES / 8; i++)
				CHECK_MSG(p[i] == frame_word(seq, i), "frame %llu: word %llu differs",
					  (unsigned long long)seq, (unsigned long long)i);
		}
		CHECK_RC(shmchan_release(r, m.pos), 0);
	}
	CHECK_RC(shmchan_peek(r, T_MS(10000), &m), -SHMCHAN_EENDED);
	shmchan_close(ch);
}

static void frames_1080p(void)
{
	struct shmchan_config cfg = t_config(FRAME_BYTES, FRAME_CAP);
	shmchan_channel *ch;
	char name[128];
	int64_t t0 = t_now_ns();

	t_name_buf(name, sizeof(name), "frames");
	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	run_pair(name, frame_producer, frame_consumer);
	printf("  %u frames of %u bytes in %.0f ms\n", FRAME_COUNT, FRAME_BYTES, t_ms(t_now_ns() - t0));
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("million_small_messages", million_small_messages, 60);
	fails += t_case("frames_1080p", frames_1080p, 60);
	return t_done(fails);
}
