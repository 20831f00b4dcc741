/* SPDX-License-Identifier: MIT */
/* Signals: a reader or writer blocked forever returns -EINTR when a handled signal arrives, and the channel works afterwards. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

#include "layout.h"

#define CAP 4

static atomic_int handled;
static atomic_int stop;

static void on_signal(int sig)
{
	(void)sig;
	atomic_fetch_add(&handled, 1);
}

static void install(int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = flags; /* 0: no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
}

/* Sends SIGUSR1 to the target thread after 100 ms, then every 20 ms until told to stop. */
static void *interrupter(void *arg)
{
	pthread_t target = *(pthread_t *)arg;

	t_sleep_ms(100);
	while (!atomic_load(&stop)) {
		pthread_kill(target, SIGUSR1);
		t_sleep_ms(20);
	}
	return NULL;
}

struct chan {
	shmchan_channel *a, *b;
	shmchan_writer *w;
	shmchan_reader *r;
};

/* Writer and reader on two handles, as two peers would be. */
static struct chan chan_open(const char *tag)
{
	struct shmchan_config cfg = t_config(64, CAP);
	struct chan c;

	CHECK_RC(shmchan_create(t_name(tag), &cfg, &c.a, NULL), 0);
	CHECK_RC(shmchan_open(t_name(tag), T_MS(500), &c.b, NULL), 0);
	CHECK_RC(shmchan_writer_attach(c.a, &c.w), 0);
	CHECK_RC(shmchan_reader_attach(c.b, &c.r), 0);
	return c;
}

static void chan_close(struct chan *c, const char *tag)
{
	shmchan_close(c->b);
	shmchan_close(c->a);
	CHECK_RC(shmchan_unlink(t_name(tag)), 0);
}

/* Runs fn (a blocking call) with the interrupter thread going; returns fn's result and the elapsed time. */
static int interrupted(int (*fn)(struct chan *, int64_t), struct chan *c, int64_t timeout, int64_t *elapsed)
{
	pthread_t self = pthread_self(), th;
	int64_t t0;
	int rc;

	atomic_store(&stop, 0);
	atomic_store(&handled, 0);
	CHECK(pthread_create(&th, NULL, interrupter, &self) == 0);
	t0 = t_now_ns();
	rc = fn(c, timeout);
	*elapsed = t_now_ns() - t0;
	atomic_store(&stop, 1);
	CHECK(pthread_join(th, NULL) == 0);
	CHECK(atomic_load(&handled) >= 1);
	return rc;
}

static int do_peek(struct chan *c, int64_t timeout)
{
	struct shmchan_msg m;
	return shmchan_peek(c->r, timeout, &m);
}

static int do_recv(struct chan *c, int64_t timeout)
{
	char buf[64];
	uint64_t len;
	return shmchan_recv(c->r, buf, sizeof(buf), &len, timeout);
}

static int do_reserve(struct chan *c, int64_t timeout)
{
	void *data;
	return shmchan_reserve(c->w, 8, timeout, &data, NULL);
}

static int do_send(struct chan *c, int64_t timeout)
{
	return shmchan_send(c->w, "blocked", 7, timeout);
}

/* After the interruption, the channel is intact: no flag left up, no reservation open, a round trip works. */
static void still_works(struct chan *c, const char *tag, int full)
{
	struct t_map m = t_map_object(t_name(tag));
	char buf[64];
	uint64_t len;

	CHECK(t_get32(&m, SHMCHAN_OFF_READER_WAITING) == 0);
	CHECK(t_get32(&m, SHMCHAN_OFF_WRITER_WAITING) == 0);
	t_unmap(&m);
	if (full) {
		CHECK_RC(shmchan_recv(c->r, buf, sizeof(buf), &len, 0), 0);
		CHECK(len == 4 && memcmp(buf, "fill", 4) == 0);
	}
	CHECK_RC(shmchan_send(c->w, "after", 5, 0), 0);
	for (int i = 1; full && i < CAP; i++)
		CHECK_RC(shmchan_recv(c->r, buf, sizeof(buf), &len, 0), 0);
	CHECK_RC(shmchan_recv(c->r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 5 && memcmp(buf, "after", 5) == 0);
	CHECK_RC(shmchan_recv(c->r, buf, sizeof(buf), &len, 0), -EAGAIN);
	CHECK(shmchan_reader_outstanding(c->r) == 0);
}

static void reader_case(int (*fn)(struct chan *, int64_t), int64_t timeout, int sa_flags, int64_t spin)
{
	struct chan c = chan_open("rd");
	int64_t el;

	install(sa_flags);
	shmchan_reader_set_spin(c.r, spin);
	CHECK_RC(interrupted(fn, &c, timeout, &el), -EINTR);
	CHECK_MSG(el >= T_MS(90) && el < T_MS(1000), "returned after %.1f ms", t_ms(el));
	still_works(&c, "rd", 0);
	chan_close(&c, "rd");
}

static void writer_case(int (*fn)(struct chan *, int64_t), int64_t timeout, int sa_flags, int64_t spin)
{
	struct chan c = chan_open("wr");
	int64_t el;

	install(sa_flags);
	shmchan_writer_set_spin(c.w, spin);
	for (int i = 0; i < CAP; i++)
		CHECK_RC(shmchan_send(c.w, "fill", 4, 0), 0);
	CHECK_RC(interrupted(fn, &c, timeout, &el), -EINTR);
	CHECK_MSG(el >= T_MS(90) && el < T_MS(1000), "returned after %.1f ms", t_ms(el));
	/* the interrupted reserve left no reservation behind */
	CHECK_RC(shmchan_commit(c.w, 0), -ENOENT);
	still_works(&c, "wr", 1);
	chan_close(&c, "wr");
}

static void reader_peek_forever(void)
{
	reader_case(do_peek, -1, 0, 50000);
}
static void reader_recv_forever(void)
{
	reader_case(do_recv, -1, 0, 0);
}
static void reader_peek_long_timeout(void)
{
	reader_case(do_peek, T_MS(5000), 0, 50000);
}
static void reader_peek_sa_restart(void)
{
	/* the header promises: "A signal ends a wait with -EINTR" (also with SA_RESTART) */
	reader_case(do_peek, -1, SA_RESTART, 50000);
}
static void writer_reserve_forever(void)
{
	writer_case(do_reserve, -1, 0, 50000);
}
static void writer_send_forever(void)
{
	writer_case(do_send, -1, 0, 0);
}
static void writer_reserve_long_timeout(void)
{
	writer_case(do_reserve, T_MS(5000), 0, 50000);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("reader_peek_forever_eintr", reader_peek_forever, 10);
	fails += t_case("reader_recv_forever_eintr", reader_recv_forever, 10);
	fails += t_case("reader_peek_long_timeout_eintr", reader_peek_long_timeout, 10);
	fails += t_case("reader_peek_sa_restart_eintr", reader_peek_sa_restart, 10);
	fails += t_case("writer_reserve_forever_eintr", writer_reserve_forever, 10);
	fails += t_case("writer_send_forever_eintr", writer_send_forever, 10);
	fails += t_case("writer_reserve_long_timeout_eintr", writer_reserve_long_timeout, 10);
	return t_done(fails);
}
