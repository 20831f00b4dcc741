/* SPDX-License-Identifier: MIT */
/* The calls bindings use to wait on their own: try calls, interrupting waits, ending a writer without detaching, inherited handles. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

#define CAP 4

struct pair {
	shmchan_channel *a, *b; /* two handles, as two peers would have */
	shmchan_writer *w;
	shmchan_reader *r;
};

static struct pair pair_open(const char *tag, uint32_t kind)
{
	struct shmchan_config cfg = t_config(64, CAP);
	struct pair p;

	cfg.kind = kind;
	if (kind == SHMCHAN_KIND_BROADCAST)
		cfg.max_readers = 2;
	CHECK_RC(shmchan_create(t_name(tag), &cfg, &p.a, NULL), 0);
	CHECK_RC(shmchan_open(t_name(tag), T_MS(500), &p.b, NULL), 0);
	CHECK_RC(shmchan_writer_attach(p.a, &p.w), 0);
	CHECK_RC(shmchan_reader_attach(p.b, &p.r), 0);
	return p;
}

static void pair_close(struct pair *p, const char *tag)
{
	shmchan_close(p->b);
	shmchan_close(p->a);
	CHECK_RC(shmchan_unlink(t_name(tag)), 0);
}

static void fill(struct pair *p)
{
	for (int i = 0; i < CAP; i++)
		CHECK_RC(shmchan_send(p->w, "x", 1, 0), 0);
}

/* Try calls: -EAGAIN at once, counting nothing; they take and reserve like the blocking calls. */
static void try_calls_count_nothing(uint32_t kind, const char *tag)
{
	struct pair p = pair_open(tag, kind);
	struct shmchan_stats st;
	struct shmchan_msg m[CAP];
	void *data;
	uint32_t slot;

	CHECK_RC(shmchan_try_peek_batch(p.r, m, CAP), -EAGAIN);
	fill(&p);
	CHECK_RC(shmchan_try_reserve(p.w, 8, &data, &slot), -EAGAIN);
	CHECK_RC(shmchan_stats(p.a, &st), 0);
	CHECK(st.full_waits == 0 && st.empty_waits == 0);
	CHECK_RC(shmchan_try_peek_batch(p.r, m, CAP), CAP);
	CHECK(m[0].pos == 0 && m[CAP - 1].pos == CAP - 1);
	for (int i = 0; i < CAP; i++)
		CHECK_RC(shmchan_release(p.r, m[i].pos), 0);
	CHECK_RC(shmchan_try_reserve(p.w, 8, &data, &slot), 0);
	CHECK_RC(shmchan_commit(p.w, 8), 0);
	CHECK(shmchan_writer_position(p.w) == CAP + 1);
	CHECK_RC(shmchan_try_peek_batch(p.r, m, CAP), 1);
	CHECK_RC(shmchan_try_peek_batch(p.r, m + 1, CAP - 1), -EAGAIN);
	shmchan_reader_count_empty(p.r);
	CHECK_RC(shmchan_stats(p.a, &st), 0);
	CHECK(kind == SHMCHAN_KIND_BROADCAST || st.empty_waits == 1);
	/* the non-blocking calls still count and look at the peer */
	CHECK_RC(shmchan_peek(p.r, 0, m + 1), -EAGAIN);
	pair_close(&p, tag);
}

static void try_calls_spsc(void)
{
	try_calls_count_nothing(SHMCHAN_KIND_SPSC, "trys");
}

static void try_calls_broadcast(void)
{
	try_calls_count_nothing(SHMCHAN_KIND_BROADCAST, "tryb");
}

/* ---- interrupting blocked calls from another thread ---- */

struct blocked {
	struct pair *p;
	int what;
	atomic_int rc;
	atomic_int started;
};

enum { W_PEEK, W_RESERVE, W_WAIT_HEAD, W_STATE };

static void *block(void *arg)
{
	struct blocked *b = arg;
	struct shmchan_msg m;
	void *data;
	uint32_t slot;
	uint64_t now;
	int rc = 0;

	atomic_store(&b->started, 1);
	switch (b->what) {
	case W_PEEK:
		rc = shmchan_peek(b->p->r, -1, &m);
		break;
	case W_RESERVE:
		rc = shmchan_reserve(b->p->w, 8, -1, &data, &slot);
		break;
	case W_WAIT_HEAD:
		rc = shmchan_wait_head_spin(b->p->b, shmchan_reader_position(b->p->r), 1000, -1);
		break;
	case W_STATE:
		rc = shmchan_state_wait(b->p->b, shmchan_state_version(b->p->b), -1, &now);
		break;
	}
	atomic_store(&b->rc, rc);
	return NULL;
}

/* A call blocked forever on one thread ends with -ECANCELED soon after another thread interrupts
   the handle (writer_only: the writer's own interrupt, which leaves the reader alone). */
static void interrupt_case(int what, int writer_only, uint32_t kind, const char *tag)
{
	struct pair p;
	struct blocked b = {.what = what};
	pthread_t th;
	int64_t t0;

	if (kind == SHMCHAN_KIND_STATE) {
		struct shmchan_config cfg = t_config(64, 2);
		cfg.kind = kind;
		CHECK_RC(shmchan_create(t_name(tag), &cfg, &p.a, NULL), 0);
		CHECK_RC(shmchan_open(t_name(tag), T_MS(500), &p.b, NULL), 0);
		CHECK_RC(shmchan_writer_attach(p.a, &p.w), 0);
		p.r = NULL;
	} else {
		p = pair_open(tag, kind);
	}
	b.p = &p;
	atomic_store(&b.rc, 1);
	if (what == W_RESERVE)
		fill(&p);
	CHECK(pthread_create(&th, NULL, block, &b) == 0);
	while (!atomic_load(&b.started))
		t_sleep_ms(1);
	t_sleep_ms(50); /* past the spin: asleep in the kernel */
	CHECK(atomic_load(&b.rc) == 1);
	t0 = t_now_ns();
	if (writer_only)
		shmchan_writer_interrupt(p.w);
	else
		shmchan_interrupt(what == W_RESERVE ? p.a : p.b);
	CHECK(pthread_join(th, NULL) == 0);
	CHECK_RC(atomic_load(&b.rc), -ECANCELED);
	CHECK_MSG(t_now_ns() - t0 < T_MS(150), "%.1f ms after the interrupt", t_ms(t_now_ns() - t0));
	if (writer_only) {
		struct shmchan_msg m;
		/* the reader of the channel is untouched; the writer's later waits end at once */
		CHECK_RC(shmchan_peek(p.r, T_MS(10), &m), 0);
		CHECK_RC(shmchan_release(p.r, m.pos), 0);
		CHECK_RC(shmchan_send(p.w, "y", 1, -1), 0); /* no wait needed: not cancelled */
		CHECK_RC(shmchan_send(p.w, "z", 1, -1), -ECANCELED); /* full again: it would wait */
	} else if (what == W_PEEK) {
		struct shmchan_msg m;
		/* sticky for blocking calls, not for non-blocking ones */
		CHECK_RC(shmchan_peek(p.r, -1, &m), -ECANCELED);
		CHECK_RC(shmchan_peek(p.r, 0, &m), -EAGAIN);
		CHECK_RC(shmchan_try_peek_batch(p.r, &m, 1), -EAGAIN);
	}
	shmchan_close(p.b);
	shmchan_close(p.a);
	CHECK_RC(shmchan_unlink(t_name(tag)), 0);
}

static void interrupt_peek(void)
{
	interrupt_case(W_PEEK, 0, SHMCHAN_KIND_SPSC, "ipeek");
}
static void interrupt_bcast_peek(void)
{
	interrupt_case(W_PEEK, 0, SHMCHAN_KIND_BROADCAST, "ibpeek");
}
static void interrupt_reserve(void)
{
	interrupt_case(W_RESERVE, 0, SHMCHAN_KIND_SPSC, "ires");
}
static void interrupt_bcast_reserve(void)
{
	interrupt_case(W_RESERVE, 0, SHMCHAN_KIND_BROADCAST, "ibres");
}
static void interrupt_wait_head(void)
{
	interrupt_case(W_WAIT_HEAD, 0, SHMCHAN_KIND_SPSC, "iwh");
}
static void interrupt_state_wait(void)
{
	interrupt_case(W_STATE, 0, SHMCHAN_KIND_STATE, "ist");
}
static void writer_interrupt_reserve(void)
{
	interrupt_case(W_RESERVE, 1, SHMCHAN_KIND_SPSC, "wires");
}
static void writer_interrupt_bcast_reserve(void)
{
	interrupt_case(W_RESERVE, 1, SHMCHAN_KIND_BROADCAST, "wibres");
}

/* wait_head_spin: returns when head moves (during the spin, or asleep), or after the timeout. */
static void *commit_later(void *arg)
{
	struct pair *p = arg;

	t_sleep_ms(30);
	CHECK_RC(shmchan_send(p->w, "x", 1, 0), 0);
	return NULL;
}

static void wait_head_spin_semantics(void)
{
	struct pair p = pair_open("whs", SHMCHAN_KIND_SPSC);
	struct shmchan_stats st;
	pthread_t th;
	int64_t t0;

	t0 = t_now_ns();
	CHECK_RC(shmchan_wait_head_spin(p.b, 0, T_MS(5), T_MS(5)), -ETIMEDOUT);
	CHECK(t_now_ns() - t0 >= T_MS(5));
	CHECK_RC(shmchan_stats(p.a, &st), 0);
	CHECK(st.empty_waits == 0); /* it counts nothing */
	CHECK_RC(shmchan_wait_head_spin(p.b, 0, 0, T_MS(20)), -ETIMEDOUT);
	CHECK_RC(shmchan_wait_head_spin(p.b, 0, 0, 0), 0); /* no wait: "look again" */
	CHECK(pthread_create(&th, NULL, commit_later, &p) == 0);
	t0 = t_now_ns();
	CHECK_RC(shmchan_wait_head_spin(p.b, 0, T_MS(1), -1), 0); /* asleep when the commit comes */
	CHECK(pthread_join(th, NULL) == 0);
	CHECK_MSG(t_now_ns() - t0 < T_MS(2000), "%.1f ms", t_ms(t_now_ns() - t0));
	CHECK_RC(shmchan_wait_head_spin(p.b, 0, T_MS(1), -1), 0); /* head is past 0 already */
	pair_close(&p, "whs");
}

/* writer_end: the stream ends for readers, but the writer stays attached until it closes. */
static void writer_end_keeps_the_writer(void)
{
	struct pair p = pair_open("wend", SHMCHAN_KIND_SPSC);
	shmchan_channel *c;
	shmchan_writer *w2;
	struct shmchan_msg m;
	struct shmchan_stats st;
	void *data;
	uint32_t slot;

	CHECK_RC(shmchan_send(p.w, "last", 4, 0), 0);
	CHECK_RC(shmchan_reserve(p.w, 8, 0, &data, &slot), 0); /* an open reservation is aborted */
	shmchan_writer_end(p.w);
	shmchan_writer_end(p.w); /* idempotent */
	CHECK_RC(shmchan_peek(p.r, 0, &m), 0);
	CHECK(m.len == 4);
	CHECK_RC(shmchan_release(p.r, m.pos), 0);
	CHECK_RC(shmchan_peek(p.r, T_MS(500), &m), -SHMCHAN_EENDED);
	CHECK_RC(shmchan_reserve(p.w, 8, 0, &data, &slot), -EPIPE);
	CHECK_RC(shmchan_stats(p.b, &st), 0); /* (a handle does not see its own locks) */
	CHECK_MSG(st.writer_state == 2 && st.aborts == 1, "state %u aborts %llu", st.writer_state,
		  (unsigned long long)st.aborts); /* closed for readers; its lock still held (below) */
	CHECK_RC(shmchan_open(t_name("wend"), T_MS(500), &c, NULL), 0);
	CHECK_RC(shmchan_writer_attach(c, &w2), -EBUSY);
	shmchan_writer_close(p.w);
	CHECK_RC(shmchan_writer_attach(c, &w2), 0);
	shmchan_close(c);
	pair_close(&p, "wend");
}

/* A handle copied into a fork() child: forgetting and closing it there leaves the parent's locks. */
static void forget_inherited_leaves_the_parent_alone(void)
{
	struct pair p = pair_open("fork", SHMCHAN_KIND_SPSC);
	struct shmchan_stats st;
	shmchan_channel *c;
	shmchan_writer *w2;
	pid_t pid;

	pid = t_fork();
	if (pid == 0) {
		shmchan_forget_inherited(p.a);
		shmchan_forget_inherited(p.b);
		shmchan_forget_inherited(p.a); /* idempotent */
		shmchan_close(p.a);
		shmchan_close(p.b);
		t_peer_exit(0);
	}
	CHECK_CHILD(pid, 5000, 0);
	CHECK_RC(shmchan_stats(p.a, &st), 0);
	CHECK(st.writer_state == 1 && st.writer_alive && st.reader_state == 1 && st.reader_alive);
	CHECK_RC(shmchan_open(t_name("fork"), T_MS(500), &c, NULL), 0);
	CHECK_RC(shmchan_writer_attach(c, &w2), -EBUSY);
	shmchan_close(c);
	CHECK_RC(shmchan_send(p.w, "x", 1, 0), 0);
	pair_close(&p, "fork");
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("try_calls_spsc", try_calls_spsc, 10);
	fails += t_case("try_calls_broadcast", try_calls_broadcast, 10);
	fails += t_case("interrupt_peek", interrupt_peek, 10);
	fails += t_case("interrupt_bcast_peek", interrupt_bcast_peek, 10);
	fails += t_case("interrupt_reserve", interrupt_reserve, 10);
	fails += t_case("interrupt_bcast_reserve", interrupt_bcast_reserve, 10);
	fails += t_case("interrupt_wait_head", interrupt_wait_head, 10);
	fails += t_case("interrupt_state_wait", interrupt_state_wait, 10);
	fails += t_case("writer_interrupt_reserve", writer_interrupt_reserve, 10);
	fails += t_case("writer_interrupt_bcast_reserve", writer_interrupt_bcast_reserve, 10);
	fails += t_case("wait_head_spin_semantics", wait_head_spin_semantics, 10);
	fails += t_case("writer_end_keeps_the_writer", writer_end_keeps_the_writer, 10);
	fails += t_case("forget_inherited_leaves_the_parent_alone", forget_inherited_leaves_the_parent_alone, 10);
	return t_done(fails);
}
