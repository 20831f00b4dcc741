/* SPDX-License-Identifier: MIT */
/* Stress in one process: a writer thread and a reader thread move 10^6 messages with no torn or mixed payload; a hostile thread flips lens[] while the reader loops recv (FAULTS #11). Also run under TSan (make check-tsan). */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

#include "layout.h"

#define SLOT 200
#define CAP 8
#define STRESS_MESSAGES 1000000L
#define HOSTILE_ITERATIONS 1000000L

/* ---- writer thread and reader thread on one channel ---- */

/*
 * One channel handle with both ends attached, so that under ThreadSanitizer both threads reach the
 * shared header and slots through the same addresses and TSan checks the barriers for real. Ends are
 * attached before the threads start and closed after both are joined; each thread uses only its end.
 */
struct pair {
	shmchan_writer *w;
	shmchan_reader *r;
	long received;
	char error[200];
};

static uint64_t msg_len(uint64_t seq)
{
	return 1 + (seq * 7919) % SLOT;
}

static void *writer_thread(void *arg)
{
	struct pair *p = arg;
	uint8_t buf[SLOT];

	for (uint64_t seq = 0; seq < (uint64_t)STRESS_MESSAGES; seq++) {
		const uint64_t len = msg_len(seq);
		int rc;
		if (seq % 3 == 0) {
			/* copying send */
			memset(buf, (int)(uint8_t)seq, (size_t)len);
			rc = shmchan_send(p->w, (const char *)buf, len, -1);
		} else {
			/* in place: reserve more, commit the real length */
			void *data;
			rc = shmchan_reserve(p->w, SLOT, -1, &data, NULL);
			if (rc == 0) {
				memset(data, (int)(uint8_t)seq, (size_t)len);
				rc = shmchan_commit(p->w, len);
			}
		}
		if (rc) {
			snprintf(p->error, sizeof(p->error), "writer: message %llu: %s", (unsigned long long)seq,
				 shmchan_strerror(rc));
			return NULL;
		}
	}
	return NULL;
}

/* Every byte of message seq must be (uint8_t)seq and its length msg_len(seq): anything else is torn or mixed. */
static int check_payload(struct pair *p, uint64_t seq, uint64_t pos, const uint8_t *data, uint64_t len)
{
	if (pos != seq || len != msg_len(seq)) {
		snprintf(p->error, sizeof(p->error), "message %llu: position %llu, length %llu (wanted %llu)",
			 (unsigned long long)seq, (unsigned long long)pos, (unsigned long long)len,
			 (unsigned long long)msg_len(seq));
		return -1;
	}
	for (uint64_t i = 0; i < len; i++) {
		if (data[i] != (uint8_t)seq) {
			snprintf(p->error, sizeof(p->error), "message %llu: byte %llu is %u, wanted %u (torn)",
				 (unsigned long long)seq, (unsigned long long)i, data[i], (unsigned)(uint8_t)seq);
			return -1;
		}
	}
	return 0;
}

static void *reader_thread(void *arg)
{
	struct pair *p = arg;
	struct shmchan_msg msgs[4];
	uint8_t buf[SLOT];
	uint64_t seq = 0, len;
	int rc;

	while (seq < (uint64_t)STRESS_MESSAGES) {
		switch (seq % 3) {
		case 0: /* copy out */
			rc = shmchan_recv(p->r, buf, sizeof(buf), &len, -1);
			if (rc == 0 && check_payload(p, seq, seq, buf, len))
				return NULL;
			if (rc == 0)
				seq++;
			break;
		case 1: /* zero-copy view, released after checking */
			rc = shmchan_peek(p->r, -1, &msgs[0]);
			if (rc == 0) {
				if (check_payload(p, seq, msgs[0].pos, msgs[0].data, msgs[0].len))
					return NULL;
				rc = shmchan_release(p->r, msgs[0].pos);
				seq++;
			}
			break;
		default: /* a batch, released newest first */
			rc = shmchan_peek_batch(p->r, msgs, 4, -1);
			if (rc > 0) {
				int n = rc;
				for (int i = 0; i < n; i++)
					if (check_payload(p, seq + (uint64_t)i, msgs[i].pos, msgs[i].data, msgs[i].len))
						return NULL;
				rc = 0;
				for (int i = n - 1; i >= 0 && rc == 0; i--)
					rc = shmchan_release(p->r, msgs[i].pos);
				seq += (uint64_t)n;
			}
			break;
		}
		if (rc) {
			snprintf(p->error, sizeof(p->error), "reader: message %llu: %s", (unsigned long long)seq,
				 shmchan_strerror(rc));
			return NULL;
		}
	}
	p->received = (long)seq;
	return NULL;
}

static void threads_million_messages(void)
{
	struct shmchan_config cfg = t_config(SLOT, CAP);
	struct shmchan_stats st;
	struct pair p;
	shmchan_channel *ch;
	pthread_t wt, rt;
	int64_t t0;

	memset(&p, 0, sizeof(p));
	cfg.slot_align = 64;
	CHECK_RC(shmchan_create(t_name("threads"), &cfg, &ch, NULL), 0);
	CHECK_RC(shmchan_writer_attach(ch, &p.w), 0);
	CHECK_RC(shmchan_reader_attach(ch, &p.r), 0);
	t0 = t_now_ns();
	CHECK(pthread_create(&rt, NULL, reader_thread, &p) == 0);
	CHECK(pthread_create(&wt, NULL, writer_thread, &p) == 0);
	CHECK(pthread_join(wt, NULL) == 0);
	CHECK(pthread_join(rt, NULL) == 0);
	CHECK_MSG(p.error[0] == 0, "%s", p.error);
	CHECK_MSG(p.received == STRESS_MESSAGES, "received %ld", p.received);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.messages_written == (uint64_t)STRESS_MESSAGES && st.messages_read == (uint64_t)STRESS_MESSAGES);
	CHECK(st.head == st.tail);
	printf("  %ld messages in %.0f ms (%.2f M/s), %llu full waits, %llu empty waits\n", p.received,
	       t_ms(t_now_ns() - t0), (double)p.received / (double)(t_now_ns() - t0) * 1e3,
	       (unsigned long long)st.full_waits, (unsigned long long)st.empty_waits);
	shmchan_writer_close(p.w);
	shmchan_reader_close(p.r);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* ---- a hostile peer flips lens[] while the reader receives ---- */

static atomic_int flipping;
static atomic_ulong flips;

/* Writes lengths 0 and SLOT, and now and then 2^31, into every slot's length, as fast as it can. */
static void *flipper(void *arg)
{
	struct t_map *m = arg;
	uint64_t i = 0;

	while (atomic_load_explicit(&flipping, memory_order_relaxed)) {
		uint64_t v = (i & 1) ? SLOT : 0;
		if ((i & 63) == 63)
			v = 1ull << 31;
		t_put64(m, SHMCHAN_LENS_OFFSET + 8 * (size_t)(i % CAP), v);
		i++;
		atomic_store_explicit(&flips, i, memory_order_relaxed);
	}
	return NULL;
}

static void hostile_length_flips(void)
{
	struct shmchan_config cfg = t_config(SLOT, CAP);
	const char *name = t_name("hostile");
	shmchan_channel *wch, *rch;
	shmchan_writer *w;
	shmchan_reader *r;
	struct t_map m;
	pthread_t th;
	uint8_t *buf = malloc(SLOT); /* exactly SLOT bytes on the heap: ASan sees a longer copy */
	uint64_t len;
	long ok = 0, poisoned = 0, empty = 0;
	char msg[10];

	CHECK(buf != NULL);
	memset(msg, 7, sizeof(msg));
	CHECK_RC(shmchan_create(name, &cfg, &wch, NULL), 0);
	CHECK_RC(shmchan_writer_attach(wch, &w), 0);
	CHECK_RC(shmchan_open(name, T_MS(1000), &rch, NULL), 0);
	CHECK_RC(shmchan_reader_attach(rch, &r), 0);
	m = t_map_object(name);
	atomic_store(&flipping, 1);
	atomic_store(&flips, 0);
	CHECK(pthread_create(&th, NULL, flipper, &m) == 0);
	while (atomic_load(&flips) == 0)
		t_sleep_ms(1);
	/* 10^6 iterations, and on a loaded machine (the flipper may be descheduled for long) more, until
	   the race has been seen to happen at least once, for at most 30 s */
	const int64_t give_up = t_now_ns() + T_MS(30000);
	for (long i = 0; i < HOSTILE_ITERATIONS || (poisoned == 0 && t_now_ns() < give_up); i++) {
		int rc = shmchan_send(w, msg, sizeof(msg), 0);
		CHECK_MSG(rc == 0 || rc == -EAGAIN, "send: %s", shmchan_strerror(rc));
		len = UINT64_MAX;
		rc = shmchan_recv(r, buf, SLOT, &len, 0);
		if (rc == 0) {
			CHECK_MSG(len <= SLOT, "a length of %llu escaped the check", (unsigned long long)len);
			ok++;
		} else if (rc == -EAGAIN) {
			empty++;
		} else {
			CHECK_MSG(rc == -SHMCHAN_ECORRUPT, "recv: %d (%s)", rc, shmchan_strerror(rc));
			/* poisoned for good: every later call says so, and a fresh handle carries on */
			CHECK_RC(shmchan_recv(r, buf, SLOT, &len, 0), -SHMCHAN_ECORRUPT);
			poisoned++;
			shmchan_close(rch);
			CHECK_RC(shmchan_open(name, T_MS(1000), &rch, NULL), 0);
			CHECK_RC(shmchan_reader_attach(rch, &r), 0);
		}
	}
	atomic_store(&flipping, 0);
	CHECK(pthread_join(th, NULL) == 0);
	printf("  %ld received with a bounded length, %ld corruptions detected, %ld empty, %lu flips\n", ok, poisoned,
	       empty, (unsigned long)atomic_load(&flips));
	CHECK(ok > 0 && poisoned > 0);
	t_unmap(&m);
	free(buf);
	shmchan_close(rch);
	CHECK_RC(shmchan_channel_unlink(wch), 0);
	shmchan_close(wch);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("threads_million_messages_no_torn_payload", threads_million_messages, 100);
	fails += t_case("hostile_length_flips_never_escape_the_check", hostile_length_flips, 100);
	return t_done(fails);
}
