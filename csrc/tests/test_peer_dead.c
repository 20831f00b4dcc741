/* SPDX-License-Identifier: MIT */
/* Peer death and clean close while the other side waits forever: EPEERDEAD within a liveness slice, EENDED at once, and recovery by a new peer. */
#include "testutil.h"

#define CAP 4

static shmchan_channel *make(const char *tag)
{
	struct shmchan_config cfg = t_config(64, CAP);
	shmchan_channel *ch;

	CHECK_RC(shmchan_create(t_name(tag), &cfg, &ch, NULL), 0);
	return ch;
}

static void send_str(shmchan_writer *w, const char *prefix, int i)
{
	char msg[32];
	int n = snprintf(msg, sizeof(msg), "%s %d", prefix, i);
	CHECK_RC(shmchan_send(w, msg, (uint64_t)n, T_MS(5000)), 0);
}

static void recv_str(shmchan_reader *r, const char *prefix, int i)
{
	char msg[32], buf[64];
	uint64_t len;
	int n = snprintf(msg, sizeof(msg), "%s %d", prefix, i);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, T_MS(5000)), 0);
	CHECK_MSG(len == (uint64_t)n && memcmp(buf, msg, len) == 0, "got \"%.*s\", wanted \"%s\"", (int)len, buf, msg);
}

/*
 * (a) The writer (another process) sends 3 messages and is killed while the reader waits with an
 * infinite timeout: the reader gets the 3 messages, then EPEERDEAD within about one 100 ms slice.
 * A new writer then attaches and the same reader receives its messages.
 */
static void writer_killed(void)
{
	shmchan_channel *ch = make("wkill");
	shmchan_reader *r;
	struct shmchan_msg m;
	struct shmchan_stats st;
	int fds[2];
	uint64_t death;

	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	t_pipe(fds);
	pid_t pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c;
		shmchan_writer *w;
		close(fds[0]);
		CHECK_RC(shmchan_open(t_name("wkill"), T_MS(1000), &c, NULL), 0);
		CHECK_RC(shmchan_writer_attach(c, &w), 0);
		for (int i = 0; i < 3; i++)
			send_str(w, "before", i);
		t_sleep_ms(200); /* the parent is asleep in peek by now */
		t_put_u64(fds[1], (uint64_t)t_now_ns());
		raise(SIGKILL);
		_exit(1);
	}
	close(fds[1]);
	for (int i = 0; i < 3; i++)
		recv_str(r, "before", i);
	CHECK_RC(shmchan_peek(r, -1, &m), -SHMCHAN_EPEERDEAD);
	int64_t now = t_now_ns();
	CHECK_RC(t_get_u64(fds[0], &death, 1000), 0);
	close(fds[0]);
	double ms = t_ms(now - (int64_t)death);
	printf("  EPEERDEAD %.1f ms after the writer's SIGKILL\n", ms);
	CHECK_MSG(now - (int64_t)death < T_MS(1000), "took %.1f ms", ms);
	CHECK_CHILD(pid, 5000, 128 + SIGKILL);
	CHECK_RC(shmchan_stats(ch, &st), 0);
	CHECK(st.writer_state == 1 && st.writer_alive == 0 && st.head == 3 && st.tail == 3);
	/* a dead writer stays dead for every later wait, however short */
	CHECK_RC(shmchan_peek(r, 0, &m), -SHMCHAN_EPEERDEAD);
	CHECK_RC(shmchan_peek(r, T_MS(50), &m), -SHMCHAN_EPEERDEAD);

	/* a new writer in another process: once it is attached, the reader goes on */
	t_pipe(fds);
	pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c;
		shmchan_writer *w;
		close(fds[0]);
		CHECK_RC(shmchan_open(t_name("wkill"), T_MS(1000), &c, NULL), 0);
		CHECK_RC(shmchan_writer_attach(c, &w), 0);
		t_put_u64(fds[1], 1);
		t_sleep_ms(50); /* the reader waits (alive writer, empty ring) before the first message */
		for (int i = 0; i < 5; i++)
			send_str(w, "after", i);
		shmchan_close(c);
		t_peer_exit(0);
	}
	close(fds[1]);
	CHECK_RC(t_get_u64(fds[0], &death, 5000), 0);
	close(fds[0]);
	for (int i = 0; i < 5; i++)
		recv_str(r, "after", i);
	CHECK_RC(shmchan_peek(r, T_MS(5000), &m), -SHMCHAN_EENDED);
	CHECK_CHILD(pid, 5000, 0);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/*
 * (b) The reader (another process) attaches and is killed while the writer waits on a full ring
 * with an infinite timeout: reserve returns EPEERDEAD. A new reader gets every message from the
 * last released position, and the writer goes on.
 */
static void reader_killed(void)
{
	shmchan_channel *ch = make("rkill");
	shmchan_writer *w;
	shmchan_reader *r;
	shmchan_channel *c2;
	int fds[2];
	uint64_t death;
	void *data;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	t_pipe(fds);
	pid_t pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c;
		shmchan_reader *cr;
		struct shmchan_msg m;
		close(fds[0]);
		CHECK_RC(shmchan_open(t_name("rkill"), T_MS(1000), &c, NULL), 0);
		CHECK_RC(shmchan_reader_attach(c, &cr), 0);
		t_put_u64(fds[1], 0);
		/* take one message and hold it (a lease), release nothing */
		CHECK_RC(shmchan_peek(cr, T_MS(5000), &m), 0);
		t_sleep_ms(200);
		t_put_u64(fds[1], (uint64_t)t_now_ns());
		raise(SIGKILL);
		_exit(1);
	}
	close(fds[1]);
	CHECK_RC(t_get_u64(fds[0], &death, 5000), 0);
	for (int i = 0; i < CAP; i++)
		send_str(w, "m", i);
	CHECK_RC(shmchan_reserve(w, 8, -1, &data, NULL), -SHMCHAN_EPEERDEAD);
	int64_t now = t_now_ns();
	CHECK_RC(t_get_u64(fds[0], &death, 1000), 0);
	double ms = t_ms(now - (int64_t)death);
	printf("  EPEERDEAD %.1f ms after the reader's SIGKILL\n", ms);
	CHECK_MSG(now - (int64_t)death < T_MS(1000), "took %.1f ms", ms);
	CHECK_CHILD(pid, 5000, 128 + SIGKILL);
	/* no reservation is left open by the failed wait */
	CHECK_RC(shmchan_reserve(w, 8, 0, &data, NULL), -SHMCHAN_EPEERDEAD);

	/* a new reader resumes at the last released position: everything, including the leased one */
	CHECK_RC(shmchan_open(t_name("rkill"), T_MS(1000), &c2, NULL), 0);
	CHECK_RC(shmchan_reader_attach(c2, &r), 0);
	recv_str(r, "m", 0);
	send_str(w, "m", CAP);
	for (int i = 1; i <= CAP; i++)
		recv_str(r, "m", i);
	shmchan_close(c2);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/*
 * (c) The writer closes cleanly while the reader waits forever: every message sent before the close
 * arrives first, then EENDED, promptly (the close wakes the reader; no liveness slice involved).
 * Five writers in turn, each in its own process; the median latency must be far below the 100 ms slice.
 */
#define CLOSE_ROUNDS 5

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void writer_closes(void)
{
	shmchan_channel *ch = make("wclose");
	shmchan_reader *r;
	struct shmchan_msg m;
	int64_t lat[CLOSE_ROUNDS];

	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	for (int round = 0; round < CLOSE_ROUNDS; round++) {
		int fds[2];
		uint64_t v, closed_at;
		t_pipe(fds);
		pid_t pid = t_fork();
		if (pid == 0) {
			shmchan_channel *c;
			shmchan_writer *w;
			close(fds[0]);
			CHECK_RC(shmchan_open(t_name("wclose"), T_MS(1000), &c, NULL), 0);
			CHECK_RC(shmchan_writer_attach(c, &w), 0);
			t_put_u64(fds[1], 0);
			for (int i = 0; i < 10; i++)
				send_str(w, "msg", i);
			t_sleep_ms(60); /* the parent drains and falls asleep */
			t_put_u64(fds[1], (uint64_t)t_now_ns());
			shmchan_writer_close(w);
			t_sleep_ms(40); /* stay alive: the close, not the exit, must wake the reader */
			shmchan_close(c);
			t_peer_exit(0);
		}
		close(fds[1]);
		CHECK_RC(t_get_u64(fds[0], &v, 5000), 0); /* attached: the previous writer's close is history */
		for (int i = 0; i < 10; i++)
			recv_str(r, "msg", i);
		int64_t t0 = t_now_ns();
		CHECK_RC(shmchan_peek(r, -1, &m), -SHMCHAN_EENDED);
		int64_t now = t_now_ns();
		CHECK_RC(t_get_u64(fds[0], &closed_at, 1000), 0);
		close(fds[0]);
		lat[round] = now - (int64_t)closed_at;
		CHECK_MSG(now - t0 >= T_MS(20), "round %d: EENDED before the close (%.1f ms)", round, t_ms(now - t0));
		CHECK_MSG(lat[round] < T_MS(1000), "round %d: EENDED %.1f ms after the close", round, t_ms(lat[round]));
		CHECK_RC(shmchan_peek(r, 0, &m), -SHMCHAN_EENDED);
		CHECK_CHILD(pid, 5000, 0);
	}
	qsort(lat, CLOSE_ROUNDS, sizeof(lat[0]), cmp64);
	printf("  EENDED after the writer's close: median %.3f ms, worst %.3f ms\n", t_ms(lat[CLOSE_ROUNDS / 2]),
	       t_ms(lat[CLOSE_ROUNDS - 1]));
	CHECK_MSG(lat[CLOSE_ROUNDS / 2] < T_MS(20), "median %.1f ms: the close does not wake the reader",
		  t_ms(lat[CLOSE_ROUNDS / 2]));
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* A writer that closes with messages still queued: the reader gets them all, then EENDED even with timeout 0. */
static void writer_closes_with_backlog(void)
{
	shmchan_channel *ch = make("backlog");
	shmchan_writer *w;
	shmchan_reader *r;
	struct shmchan_msg m;
	char buf[64];
	uint64_t len;

	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	for (int i = 0; i < CAP; i++)
		send_str(w, "q", i);
	shmchan_writer_close(w);
	for (int i = 0; i < CAP; i++)
		recv_str(r, "q", i);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), -SHMCHAN_EENDED);
	CHECK_RC(shmchan_peek(r, -1, &m), -SHMCHAN_EENDED);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* A reader that closes cleanly is not dead: a writer with a full ring keeps waiting (until its timeout). */
static void reader_closes_is_not_dead(void)
{
	shmchan_channel *ch = make("rclose");
	shmchan_channel *b;
	shmchan_writer *w;
	shmchan_reader *r;
	void *data;

	CHECK_RC(shmchan_open(t_name("rclose"), T_MS(1000), &b, NULL), 0);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	CHECK_RC(shmchan_reader_attach(b, &r), 0);
	for (int i = 0; i < CAP; i++)
		send_str(w, "z", i);
	shmchan_reader_close(r);
	CHECK_RC(shmchan_reserve(w, 8, T_MS(150), &data, NULL), -ETIMEDOUT);
	shmchan_close(b);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("writer_killed_reader_sees_peerdead", writer_killed, 15);
	fails += t_case("reader_killed_writer_sees_peerdead", reader_killed, 15);
	fails += t_case("writer_close_wakes_reader_with_ended", writer_closes, 15);
	fails += t_case("writer_close_with_backlog", writer_closes_with_backlog, 10);
	fails += t_case("reader_close_is_not_death", reader_closes_is_not_dead, 10);
	return t_done(fails);
}
