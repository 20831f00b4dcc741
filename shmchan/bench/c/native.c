/* SPDX-License-Identifier: MIT */
/*
 * The shmchan core alone, C writer and C reader in two processes, through csrc/include/shmchan.h.
 *
 *   native --bytes N,N,... --kinds latency,throughput --modes busy,blocking --seconds S
 *          [--cpus A,B] --prefix NAME
 *
 * latency:    ping-pong over two channels; the round trip time of every iteration is recorded.
 * throughput: one-way stream; the consumer times it.
 * The writer memsets every byte of each message (a value derived from its sequence number); the
 * reader sums every 8-byte word and checks the sum. busy: spin forever; blocking: the default
 * spin (50 us) then a futex sleep. Prints one JSON object per cell on stdout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "shmchan.h"

#define MAX_SAMPLES 2000000
#define SPIN_FOREVER ((int64_t)1 << 62)
#define CHUNKS 20

struct shared {
	_Atomic int go;
	_Atomic int64_t b_cpu_ns;
	_Atomic int64_t b_msgs;
	_Atomic int64_t b_errors;
	_Atomic int64_t b_ns;
	_Atomic int nchunks;
	double chunk_rate[CHUNKS * 4];
};

static double seconds = 0.5;
static int cpu_a = -1, cpu_b = -1;
static const char *prefix = "nativebench";

static void die(const char *what, int rc)
{
	fprintf(stderr, "native: %s: %s\n", what, shmchan_strerror(rc));
	_exit(1);
}

static shmchan_channel *make(const char *name, uint64_t size, uint32_t cap)
{
	struct shmchan_config cfg = {.slot_size = size, .capacity = cap};
	struct shmchan_diag diag;
	shmchan_channel *ch;
	int rc = shmchan_create(name, &cfg, &ch, &diag);

	if (rc) {
		fprintf(stderr, "native: create %s: %s (%s)\n", name, shmchan_strerror(rc), diag.message);
		exit(1);
	}
	return ch;
}

static shmchan_channel *attach(const char *name)
{
	struct shmchan_diag diag;
	shmchan_channel *ch;
	int rc = shmchan_open(name, 2000000000, &ch, &diag);

	if (rc) {
		fprintf(stderr, "native: open %s: %s (%s)\n", name, shmchan_strerror(rc), diag.message);
		_exit(1);
	}
	return ch;
}

static int put(shmchan_writer *w, uint64_t n, unsigned v)
{
	void *p;
	int rc = shmchan_reserve(w, n, -1, &p, NULL);

	if (rc)
		return rc;
	memset(p, (int)v, n);
	return shmchan_commit(w, n);
}

/* Takes the next message: returns its fill value (or -1 if wrong), -2 for the stop message. */
static int take(shmchan_reader *r, int *rcp)
{
	struct shmchan_msg m;
	int v, rc = shmchan_peek(r, -1, &m);

	*rcp = rc;
	if (rc)
		return -3;
	v = m.len == 0 ? -2 : check_fill(m.data, m.len);
	rc = shmchan_release(r, m.pos);
	*rcp = rc;
	return v;
}

static void run_cell(const char *kind, const char *mode, uint64_t n, int index)
{
	int busy = !strcmp(mode, "busy"), lat = !strcmp(kind, "latency");
	uint32_t cap = 2;
	char ping[200], pong[200];
	shmchan_channel *cp, *cq = NULL;
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int64_t *rtt = NULL;
	double *batch = NULL;
	size_t nb = 0;
	pid_t pid;
	int status, rc;

	if (sh == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	if (!lat) {
		/* a ring of up to 16 MiB (at least 2 slots, at most 64) so producer and consumer overlap */
		uint64_t c = ((uint64_t)16 << 20) / n;
		cap = 2;
		while (cap < 64 && (uint64_t)cap * 2 <= c)
			cap *= 2;
	}
	snprintf(ping, sizeof(ping), "%s-%d-ping", prefix, index);
	snprintf(pong, sizeof(pong), "%s-%d-pong", prefix, index);
	cp = make(ping, n, cap);
	if (lat)
		cq = make(pong, n, cap);
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		/* B: the consumer / echo side. It opens the channels itself (handles do not cross fork). */
		shmchan_channel *bp, *bq = NULL;
		shmchan_reader *r;
		shmchan_writer *w = NULL;
		int64_t c0, t0, t1, msgs = 0, errors = 0, chunk_t, chunk_m = 0, next_check;
		int nch = 0, v;

		pin_to(cpu_b);
		bp = attach(ping);
		if ((rc = shmchan_reader_attach(bp, &r)))
			die("reader attach", rc);
		if (busy)
			shmchan_reader_set_spin(r, SPIN_FOREVER);
		if (lat) {
			bq = attach(pong);
			if ((rc = shmchan_writer_attach(bq, &w)))
				die("writer attach", rc);
			if (busy)
				shmchan_writer_set_spin(w, SPIN_FOREVER);
		}
		atomic_fetch_add(&sh->go, 1);
		while (atomic_load(&sh->go) < 3)
			cpu_relax();
		c0 = cpu_ns();
		t0 = chunk_t = now_ns();
		next_check = 64;
		for (;;) {
			v = take(r, &rc);
			if (rc)
				die("peek/release", rc);
			if (v == -2)
				break;
			if (v < 0)
				errors++;
			msgs++;
			if (lat) {
				if ((rc = put(w, n, v < 0 ? 1u : (unsigned)v)))
					die("reserve/commit", rc);
			} else if (msgs >= next_check) {
				int64_t t = now_ns();
				if (t - chunk_t >= (int64_t)(seconds * 1e9 / CHUNKS) && nch < CHUNKS * 4) {
					sh->chunk_rate[nch++] = (double)(msgs - chunk_m) * 1e9 / (double)(t - chunk_t);
					chunk_t = t;
					chunk_m = msgs;
				}
				next_check = msgs + 16;
			}
		}
		t1 = now_ns();
		atomic_store(&sh->b_cpu_ns, cpu_ns() - c0);
		atomic_store(&sh->b_msgs, msgs);
		atomic_store(&sh->b_errors, errors);
		atomic_store(&sh->b_ns, t1 - t0);
		atomic_store(&sh->nchunks, nch);
		shmchan_reader_close(r);
		if (w)
			shmchan_writer_close(w);
		shmchan_close(bp);
		if (bq)
			shmchan_close(bq);
		_exit(0);
	}

	/* A: the producer / pinging side */
	{
		shmchan_writer *w;
		shmchan_reader *r = NULL;
		int64_t c0, c1, end, warm_end, msgs = 0, errors = 0, batch_t0 = 0;
		size_t ns = 0;
		uint64_t seq = 0;

		pin_to(cpu_a);
		if ((rc = shmchan_writer_attach(cp, &w)))
			die("writer attach", rc);
		if (busy)
			shmchan_writer_set_spin(w, SPIN_FOREVER);
		if (lat) {
			if ((rc = shmchan_reader_attach(cq, &r)))
				die("reader attach", rc);
			if (busy)
				shmchan_reader_set_spin(r, SPIN_FOREVER);
			rtt = malloc(sizeof(int64_t) * MAX_SAMPLES);
			batch = malloc(sizeof(double) * (MAX_SAMPLES / BATCH + 1));
			if (!rtt || !batch) {
				perror("malloc");
				exit(1);
			}
		}
		atomic_fetch_add(&sh->go, 1);
		while (atomic_load(&sh->go) < 2)
			cpu_relax();
		atomic_fetch_add(&sh->go, 1);
		/* a warm-up of a tenth of the budget, not recorded */
		warm_end = now_ns() + (int64_t)(seconds * 1e8);
		end = 0;
		c0 = 0;
		for (;;) {
			int64_t t0 = now_ns(), t1;
			unsigned v = fill_value(seq);

			if (!end && t0 >= warm_end) {
				end = t0 + (int64_t)(seconds * 1e9);
				c0 = cpu_ns();
				msgs = 0;
				batch_t0 = t0;
			}
			if ((rc = put(w, n, v)))
				die("reserve/commit", rc);
			seq++;
			if (lat) {
				int got = take(r, &rc);
				if (rc)
					die("peek/release", rc);
				t1 = now_ns();
				if (end) {
					if (got != (int)v)
						errors++;
					rtt[ns++] = t1 - t0;
					if (ns % BATCH == 0) {
						batch[nb++] = (double)(t1 - batch_t0) / BATCH / 1000.0;
						batch_t0 = t1;
					}
				}
			} else {
				t1 = t0;
			}
			if (end) {
				msgs++;
				if (t1 >= end || ns == MAX_SAMPLES)
					break;
				if (!lat && (msgs & 15) == 0 && now_ns() >= end)
					break;
			}
		}
		c1 = cpu_ns();
		if ((rc = shmchan_reserve(w, 0, -1, &(void *){NULL}, NULL)) || (rc = shmchan_commit(w, 0)))
			die("stop message", rc);
		waitpid(pid, &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "native: the consumer process failed\n");
			exit(1);
		}
		printf("{\"kind\":\"%s\",\"mode\":\"%s\",\"bytes\":%llu,\"capacity\":%u,", kind, mode, (unsigned long long)n,
		       cap);
		if (lat) {
			printf("\"n\":%zu,", ns);
			print_percentiles("rtt_us", rtt, ns, 1000.0);
			printf(",\"rtt_batch_us\":%.5f", median(batch, nb));
			printf(",\"cpu_us_per_msg\":{\"a\":%.4f,\"b\":%.4f},\"errors\":%lld}\n",
			       (double)(c1 - c0) / (double)ns / 1000.0,
			       (double)atomic_load(&sh->b_cpu_ns) / (double)atomic_load(&sh->b_msgs) / 1000.0,
			       (long long)(errors + atomic_load(&sh->b_errors)));
		} else {
			int64_t bm = atomic_load(&sh->b_msgs), bns = atomic_load(&sh->b_ns);
			int nch = atomic_load(&sh->nchunks);
			double overall = (double)bm * 1e9 / (double)bns;
			double med = nch >= 3 ? median(sh->chunk_rate, (size_t)nch) : overall;

			printf("\"n\":%lld,\"msgs_per_s\":%.2f,\"msgs_per_s_overall\":%.2f,\"gbps\":%.4f,", (long long)bm, med,
			       overall, med * (double)n / 1e9);
			printf("\"cpu_us_per_msg\":{\"a\":%.4f,\"b\":%.4f},\"errors\":%lld}\n",
			       (double)(c1 - c0) / (double)msgs / 1000.0,
			       (double)atomic_load(&sh->b_cpu_ns) / (double)bm / 1000.0,
			       (long long)atomic_load(&sh->b_errors));
		}
		fflush(stdout);
		shmchan_writer_close(w);
		if (r)
			shmchan_reader_close(r);
	}
	shmchan_channel_unlink(cp);
	shmchan_close(cp);
	if (cq) {
		shmchan_channel_unlink(cq);
		shmchan_close(cq);
	}
	free(rtt);
	free(batch);
	munmap(sh, sizeof(*sh));
}

int main(int argc, char **argv)
{
	const char *bytes = "64", *kinds = "latency,throughput", *modes = "busy,blocking", *cpus = NULL;
	char *k, *m, *b, *ks, *ms, *bs, *s1, *s2, *s3;
	int i, index = 0;

	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--bytes"))
			bytes = argv[i + 1];
		else if (!strcmp(argv[i], "--kinds"))
			kinds = argv[i + 1];
		else if (!strcmp(argv[i], "--modes"))
			modes = argv[i + 1];
		else if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--cpus"))
			cpus = argv[i + 1];
		else if (!strcmp(argv[i], "--prefix"))
			prefix = argv[i + 1];
		else {
			fprintf(stderr, "unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (i != argc) {
		fprintf(stderr, "usage: native --bytes N,... --kinds K,... --modes M,... --seconds S [--cpus A,B] --prefix P\n");
		return 2;
	}
	parse_cpus(cpus, &cpu_a, &cpu_b);
	ks = strdup(kinds);
	for (k = strtok_r(ks, ",", &s1); k; k = strtok_r(NULL, ",", &s1)) {
		ms = strdup(modes);
		for (m = strtok_r(ms, ",", &s2); m; m = strtok_r(NULL, ",", &s2)) {
			bs = strdup(bytes);
			for (b = strtok_r(bs, ",", &s3); b; b = strtok_r(NULL, ",", &s3))
				run_cell(k, m, strtoull(b, NULL, 10), index++);
			free(bs);
		}
		free(ms);
	}
	free(ks);
	return 0;
}
