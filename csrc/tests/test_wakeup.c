/* SPDX-License-Identifier: MIT */
/* Wake-ups and timeouts: a sleeping peer in another process is woken promptly; timeouts of 0, 50 ms, 250 ms and "forever" behave. */
#include "testutil.h"

#define CAP 4
#define ROUNDS 10
#define WAKE_LIMIT T_MS(50)  /* a lost wake-up costs up to a 100 ms liveness slice (50 ms on average) */
#define MEDIAN_LIMIT T_MS(10) /* a prompt futex wake-up takes well under 1 ms */

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* A peer sends its wake-up latencies as: median, worst, how many over WAKE_LIMIT. */
static void send_latencies(int fd, int64_t *lat, int n)
{
	int64_t slow = 0;

	qsort(lat, (size_t)n, sizeof(*lat), cmp64);
	for (int i = 0; i < n; i++)
		slow += lat[i] > WAKE_LIMIT;
	t_put_u64(fd, (uint64_t)lat[n / 2]);
	t_put_u64(fd, (uint64_t)lat[n - 1]);
	t_put_u64(fd, (uint64_t)slow);
}

/* One late wake-up can be the scheduler on a busy machine; a lost-wake-up bug makes most of them late. */
static void check_latencies(int fd, const char *what)
{
	uint64_t median, worst, slow;

	CHECK_RC(t_get_u64(fd, &median, 5000), 0);
	CHECK_RC(t_get_u64(fd, &worst, 5000), 0);
	CHECK_RC(t_get_u64(fd, &slow, 5000), 0);
	printf("  %s: median wake-up %.3f ms, worst %.3f ms, %llu of %d over %.0f ms\n", what, t_ms((int64_t)median),
	       t_ms((int64_t)worst), (unsigned long long)slow, ROUNDS, t_ms(WAKE_LIMIT));
	CHECK_MSG((int64_t)median < MEDIAN_LIMIT, "median wake-up %.1f ms", t_ms((int64_t)median));
	CHECK_MSG(slow <= ROUNDS / 5, "%llu of %d wake-ups took over %.0f ms", (unsigned long long)slow, ROUNDS,
		  t_ms(WAKE_LIMIT));
	CHECK_MSG((int64_t)worst < T_MS(1000), "a wake-up took %.1f ms", t_ms((int64_t)worst));
}

static shmchan_channel *make(const char *tag)
{
	struct shmchan_config cfg = t_config(64, CAP);
	shmchan_channel *ch;

	CHECK_RC(shmchan_create(t_name(tag), &cfg, &ch, NULL), 0);
	return ch;
}

/*
 * A reader in a child process sleeps in peek(-1); the parent sends a message carrying its send time
 * after 20-40 ms. Wake-ups must come well within a liveness slice (no lost futex wake).
 */
static void reader_woken(int64_t spin)
{
	shmchan_channel *ch = make("wr");
	shmchan_writer *w;
	int fds[2];
	uint64_t v;

	t_pipe(fds);
	pid_t pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c;
		shmchan_reader *r;
		struct shmchan_msg m;
		struct shmchan_stats st;
		int64_t lat[ROUNDS];
		close(fds[0]);
		CHECK_RC(shmchan_open(t_name("wr"), T_MS(1000), &c, NULL), 0);
		CHECK_RC(shmchan_reader_attach(c, &r), 0);
		shmchan_reader_set_spin(r, spin);
		t_put_u64(fds[1], 0);
		for (int i = 0; i < ROUNDS; i++) {
			int64_t sent;
			CHECK_RC(shmchan_peek(r, -1, &m), 0);
			int64_t now = t_now_ns();
			CHECK(m.len == sizeof(sent));
			memcpy(&sent, m.data, sizeof(sent));
			CHECK_RC(shmchan_release(r, m.pos), 0);
			lat[i] = now - sent;
		}
		CHECK_RC(shmchan_stats(c, &st), 0);
		CHECK_MSG(st.empty_waits >= ROUNDS, "empty_waits %llu: the reader did not wait",
			  (unsigned long long)st.empty_waits);
		send_latencies(fds[1], lat, ROUNDS);
		shmchan_close(c);
		t_peer_exit(0);
	}
	close(fds[1]);
	CHECK_RC(t_get_u64(fds[0], &v, 5000), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	for (int i = 0; i < ROUNDS; i++) {
		t_sleep_ms(20 + (i * 7) % 21);
		int64_t now = t_now_ns();
		CHECK_RC(shmchan_send(w, (const char *)&now, sizeof(now), 0), 0);
	}
	check_latencies(fds[0], spin ? "reader, default spin" : "reader, no spin");
	CHECK_CHILD(pid, 5000, 0);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static void reader_woken_spin0(void)
{
	reader_woken(0);
}
static void reader_woken_default_spin(void)
{
	reader_woken(50000);
}

/* A writer in a child process sleeps on a full ring; the parent's release wakes it promptly. */
static void writer_woken(void)
{
	shmchan_channel *ch = make("ww");
	shmchan_reader *r;
	int to_parent[2], to_child[2];
	uint64_t v;

	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	t_pipe(to_parent);
	t_pipe(to_child);
	pid_t pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c;
		shmchan_writer *w;
		int64_t lat[ROUNDS];
		CHECK_RC(shmchan_open(t_name("ww"), T_MS(1000), &c, NULL), 0);
		CHECK_RC(shmchan_writer_attach(c, &w), 0);
		shmchan_writer_set_spin(w, 0);
		for (int i = 0; i < CAP; i++)
			CHECK_RC(shmchan_send(w, "x", 1, 0), 0);
		t_put_u64(to_parent[1], 0);
		for (int i = 0; i < ROUNDS; i++) {
			uint64_t released_at;
			CHECK_RC(shmchan_send(w, "y", 1, -1), 0); /* sleeps until the parent releases one */
			int64_t now = t_now_ns();
			CHECK_RC(t_get_u64(to_child[0], &released_at, 5000), 0);
			lat[i] = now - (int64_t)released_at;
		}
		send_latencies(to_parent[1], lat, ROUNDS);
		shmchan_close(c);
		t_peer_exit(0);
	}
	CHECK_RC(t_get_u64(to_parent[0], &v, 5000), 0);
	for (int i = 0; i < ROUNDS; i++) {
		char buf[8];
		uint64_t len;
		t_sleep_ms(20 + (i * 7) % 21);
		int64_t now = t_now_ns();
		t_put_u64(to_child[1], (uint64_t)now); /* the time is sent first; the child reads it after waking */
		CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
	}
	check_latencies(to_parent[0], "writer, no spin");
	CHECK_CHILD(pid, 5000, 0);
	struct shmchan_stats st;
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.full_waits >= ROUNDS);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* Timeouts on an empty ring (reader) and a full ring (writer), with and without spinning. */
static void timeouts(void)
{
	shmchan_channel *ch = make("to");
	shmchan_channel *b;
	shmchan_writer *w;
	shmchan_reader *r;
	struct shmchan_msg m;
	void *data;
	int64_t t0, el;

	CHECK_RC(shmchan_open(t_name("to"), T_MS(1000), &b, NULL), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_reader_attach(b, &r), 0);
	for (int spin = 0; spin < 2; spin++) {
		shmchan_reader_set_spin(r, spin ? 50000 : 0);
		shmchan_writer_set_spin(w, spin ? 50000 : 0);

		t0 = t_now_ns();
		CHECK_RC(shmchan_peek(r, 0, &m), -EAGAIN);
		el = t_now_ns() - t0;
		CHECK_MSG(el < T_MS(20), "timeout 0 took %.3f ms", t_ms(el));

		t0 = t_now_ns();
		CHECK_RC(shmchan_peek(r, T_MS(50), &m), -ETIMEDOUT);
		el = t_now_ns() - t0;
		CHECK_MSG(el >= T_MS(50) && el < T_MS(500), "50 ms timeout took %.1f ms", t_ms(el));

		t0 = t_now_ns();
		CHECK_RC(shmchan_peek(r, 1, &m), -ETIMEDOUT); /* 1 ns */
		CHECK(t_now_ns() - t0 < T_MS(50));

		/* longer than a liveness slice: the slices add up to the deadline, not more */
		t0 = t_now_ns();
		CHECK_RC(shmchan_peek(r, T_MS(250), &m), -ETIMEDOUT);
		el = t_now_ns() - t0;
		CHECK_MSG(el >= T_MS(250) && el < T_MS(750), "250 ms timeout took %.1f ms", t_ms(el));

		for (int i = 0; i < CAP; i++)
			CHECK_RC(shmchan_send(w, "f", 1, 0), 0);
		t0 = t_now_ns();
		CHECK_RC(shmchan_reserve(w, 1, 0, &data, NULL), -EAGAIN);
		el = t_now_ns() - t0;
		CHECK_MSG(el < T_MS(20), "timeout 0 took %.3f ms", t_ms(el));
		t0 = t_now_ns();
		CHECK_RC(shmchan_reserve(w, 1, T_MS(50), &data, NULL), -ETIMEDOUT);
		el = t_now_ns() - t0;
		CHECK_MSG(el >= T_MS(50) && el < T_MS(500), "50 ms timeout took %.1f ms", t_ms(el));
		for (int i = 0; i < CAP; i++) {
			char buf[8];
			uint64_t len;
			CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
		}
	}
	shmchan_close(b);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/*
 * INT64_MAX ns (292 years) is "practically forever": the wait must last until the message comes,
 * not end at once because start + timeout overflowed.
 */
static void huge_timeout_waits(void)
{
	shmchan_channel *ch = make("huge");
	shmchan_reader *r;
	struct shmchan_msg m;

	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	pid_t pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c;
		shmchan_writer *w;
		CHECK_RC(shmchan_open(t_name("huge"), T_MS(1000), &c, NULL), 0);
		CHECK_RC(shmchan_writer_attach(c, &w), 0);
		t_sleep_ms(100);
		CHECK_RC(shmchan_send(w, "late", 4, 0), 0);
		t_sleep_ms(50);
		shmchan_close(c);
		t_peer_exit(0);
	}
	int64_t t0 = t_now_ns();
	int rc = shmchan_peek(r, INT64_MAX, &m);
	int64_t el = t_now_ns() - t0;
	CHECK_MSG(rc == 0, "peek(INT64_MAX) returned %d (%s) after %.3f ms", rc, shmchan_strerror(rc), t_ms(el));
	CHECK(m.len == 4 && memcmp(m.data, "late", 4) == 0);
	CHECK(el >= T_MS(50));
	CHECK_CHILD(pid, 5000, 0);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("reader_woken_by_send_spin0", reader_woken_spin0, 10);
	fails += t_case("reader_woken_by_send_default_spin", reader_woken_default_spin, 10);
	fails += t_case("writer_woken_by_release", writer_woken, 10);
	fails += t_case("timeouts", timeouts, 10);
	fails += t_case("huge_timeout_waits", huge_timeout_waits, 10);
	return t_done(fails);
}
