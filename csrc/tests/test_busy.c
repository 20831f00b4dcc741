/* SPDX-License-Identifier: MIT */
/* Single producer, single consumer: a second writer or reader (same handle, other handle, other process) gets -EBUSY until the first one leaves. */
#include "testutil.h"

static void open_pair(const char *tag, shmchan_channel **a, shmchan_channel **b)
{
	struct shmchan_config cfg = t_config(64, 4);

	CHECK_RC(shmchan_create(t_name(tag), &cfg, a, NULL), 0);
	CHECK_RC(shmchan_open(t_name(tag), T_MS(500), b, NULL), 0);
}

static void close_pair(const char *tag, shmchan_channel *a, shmchan_channel *b)
{
	shmchan_close(b);
	shmchan_close(a);
	CHECK_RC(shmchan_unlink(t_name(tag)), 0);
}

static void second_writer_busy(void)
{
	shmchan_channel *a, *b;
	shmchan_writer *w1, *w2;
	shmchan_reader *r;
	char buf[8];
	uint64_t len;

	open_pair("bw", &a, &b);
	CHECK_RC(shmchan_writer_attach(a, &w1), 0);
	w2 = (shmchan_writer *)(uintptr_t)1;
	CHECK_RC(shmchan_writer_attach(a, &w2), -EBUSY); /* same handle */
	CHECK(w2 == NULL);
	CHECK_RC(shmchan_writer_attach(b, &w2), -EBUSY); /* another handle, same process */
	CHECK(w2 == NULL);
	/* a writer does not block readers */
	CHECK_RC(shmchan_reader_attach(a, &r), 0);
	CHECK_RC(shmchan_send(w1, "one", 3, 0), 0);
	shmchan_writer_close(w1);
	CHECK_RC(shmchan_writer_attach(b, &w2), 0); /* after close, another handle attaches */
	CHECK_RC(shmchan_writer_attach(a, &w1), -EBUSY);
	CHECK_RC(shmchan_send(w2, "two", 3, 0), 0);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 3 && memcmp(buf, "one", 3) == 0);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 3 && memcmp(buf, "two", 3) == 0);
	shmchan_writer_close(w2);
	CHECK_RC(shmchan_writer_attach(a, &w1), 0); /* and the first handle again */
	CHECK_RC(shmchan_writer_attach(NULL, &w1), -EINVAL);
	CHECK_RC(shmchan_writer_attach(a, NULL), -EINVAL);
	close_pair("bw", a, b);
}

static void second_reader_busy(void)
{
	shmchan_channel *a, *b;
	shmchan_reader *r1, *r2;
	shmchan_writer *w;
	char buf[8];
	uint64_t len;

	open_pair("br", &a, &b);
	CHECK_RC(shmchan_reader_attach(a, &r1), 0);
	r2 = (shmchan_reader *)(uintptr_t)1;
	CHECK_RC(shmchan_reader_attach(a, &r2), -EBUSY);
	CHECK(r2 == NULL);
	CHECK_RC(shmchan_reader_attach(b, &r2), -EBUSY);
	CHECK(r2 == NULL);
	CHECK_RC(shmchan_writer_attach(b, &w), 0);
	CHECK_RC(shmchan_send(w, "abc", 3, 0), 0);
	CHECK_RC(shmchan_send(w, "def", 3, 0), 0);
	CHECK_RC(shmchan_recv(r1, buf, sizeof(buf), &len, 0), 0);
	shmchan_reader_close(r1);
	CHECK_RC(shmchan_reader_attach(b, &r2), 0);
	CHECK_RC(shmchan_reader_attach(a, &r1), -EBUSY);
	CHECK_RC(shmchan_recv(r2, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 3 && memcmp(buf, "def", 3) == 0);
	shmchan_reader_close(r2);
	CHECK_RC(shmchan_reader_attach(a, &r1), 0);
	CHECK_RC(shmchan_reader_attach(NULL, &r1), -EINVAL);
	close_pair("br", a, b);
}

/* Closing a channel handle releases its writer and reader; closing an unrelated handle releases nothing. */
static void handle_close_releases_only_its_own(void)
{
	shmchan_channel *a, *b, *c;
	shmchan_writer *w;
	shmchan_reader *r;

	open_pair("hc", &a, &b);
	CHECK_RC(shmchan_writer_attach(a, &w), 0);
	CHECK_RC(shmchan_reader_attach(a, &r), 0);
	/* another handle of the same object in this process comes and goes (its own fd closed) */
	CHECK_RC(shmchan_open(t_name("hc"), T_MS(500), &c, NULL), 0);
	shmchan_close(c);
	CHECK_RC(shmchan_writer_attach(b, &w), -EBUSY);
	CHECK_RC(shmchan_reader_attach(b, &r), -EBUSY);
	shmchan_close(a); /* detaches both */
	CHECK_RC(shmchan_writer_attach(b, &w), 0);
	CHECK_RC(shmchan_reader_attach(b, &r), 0);
	shmchan_close(b);
	CHECK_RC(shmchan_unlink(t_name("hc")), 0);
}

/*
 * A writer (or reader) in another process: our attach gets -EBUSY for as long as it lives, and
 * succeeds once it exits, whether it closed cleanly, exited without closing, or was killed.
 */
static void other_process_holds(int reader_side, int how)
{
	shmchan_channel *ch;
	struct shmchan_stats st;
	int to_child[2], to_parent[2];
	uint64_t v;

	CHECK_RC(shmchan_create(t_name("proc"), &(struct shmchan_config){.slot_size = 64, .capacity = 4}, &ch, NULL),
		 0);
	t_pipe(to_child);
	t_pipe(to_parent);
	pid_t pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c;
		shmchan_writer *w = NULL;
		shmchan_reader *r = NULL;
		CHECK_RC(shmchan_open(t_name("proc"), T_MS(500), &c, NULL), 0);
		if (reader_side)
			CHECK_RC(shmchan_reader_attach(c, &r), 0);
		else
			CHECK_RC(shmchan_writer_attach(c, &w), 0);
		t_put_u64(to_parent[1], 1);
		CHECK_RC(t_get_u64(to_child[0], &v, 10000), 0);
		if (how == 0) { /* clean close */
			shmchan_writer_close(w);
			shmchan_reader_close(r);
			t_put_u64(to_parent[1], 2);
			CHECK_RC(t_get_u64(to_child[0], &v, 10000), 0);
			shmchan_close(c);
			t_peer_exit(0);
		}
		if (how == 1)
			_exit(0); /* exit without closing anything */
		raise(SIGKILL);
		_exit(1);
	}
	CHECK_RC(t_get_u64(to_parent[0], &v, 5000), 0);
	for (int i = 0; i < 3; i++) {
		if (reader_side) {
			shmchan_reader *r;
			CHECK_RC(shmchan_reader_attach(ch, &r), -EBUSY);
		} else {
			shmchan_writer *w;
			CHECK_RC(shmchan_writer_attach(ch, &w), -EBUSY);
		}
		t_sleep_ms(5);
	}
	CHECK_RC(shmchan_stats(ch, &st), 0);
	if (reader_side)
		CHECK(st.reader_state == 1 && st.reader_pid == (uint32_t)pid && st.reader_alive == 1);
	else
		CHECK(st.writer_state == 1 && st.writer_pid == (uint32_t)pid && st.writer_alive == 1);
	t_put_u64(to_child[1], 1);
	if (how == 0) {
		/* closed while the process still runs: attach works before it exits */
		CHECK_RC(t_get_u64(to_parent[0], &v, 5000), 0);
	} else {
		CHECK_CHILD(pid, 5000, how == 1 ? 0 : 128 + SIGKILL);
	}
	if (reader_side) {
		shmchan_reader *r;
		CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	} else {
		shmchan_writer *w;
		CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	}
	if (how == 0) {
		t_put_u64(to_child[1], 1);
		CHECK_CHILD(pid, 5000, 0);
	}
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static void writer_in_child_clean_close(void)
{
	other_process_holds(0, 0);
}
static void writer_in_child_exits(void)
{
	other_process_holds(0, 1);
}
static void writer_in_child_killed(void)
{
	other_process_holds(0, 2);
}
static void reader_in_child_clean_close(void)
{
	other_process_holds(1, 0);
}
static void reader_in_child_exits(void)
{
	other_process_holds(1, 1);
}
static void reader_in_child_killed(void)
{
	other_process_holds(1, 2);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("second_writer_busy", second_writer_busy, 10);
	fails += t_case("second_reader_busy", second_reader_busy, 10);
	fails += t_case("handle_close_releases_only_its_own", handle_close_releases_only_its_own, 10);
	fails += t_case("writer_in_child_clean_close", writer_in_child_clean_close, 10);
	fails += t_case("writer_in_child_exits", writer_in_child_exits, 10);
	fails += t_case("writer_in_child_killed", writer_in_child_killed, 10);
	fails += t_case("reader_in_child_clean_close", reader_in_child_clean_close, 10);
	fails += t_case("reader_in_child_exits", reader_in_child_exits, 10);
	fails += t_case("reader_in_child_killed", reader_in_child_killed, 10);
	return t_done(fails);
}
