/* SPDX-License-Identifier: MIT */
/*
 * shmchan._core: the native data plane. Writer, Reader, Slot and Message are C types whose methods
 * do one call into the core per message (reserve / commit / recv / release), export the slots'
 * memory themselves and count the views made from it, so a slot goes back to the writer in C when
 * the last view of its message dies. The core is reached through the table of function pointers
 * the CFFI module exports (_capi.h): it keeps process-wide state and must exist once.
 *
 * Lifetimes. Every object holds a strong reference to the one above it: a view's token holds its
 * Message (or Slot), which holds its Reader (or Writer), which holds the Mapping, which owns the C
 * channel handle. The upward links are borrowed (a Mapping knows its Writer and Reader, a Message
 * its token) and cleared by the lower object when it dies. So the mapping can never be unmapped
 * under a live view: closing a handle closes it for the user at once, and what live views still
 * need (the reader with the messages they pin, the writer whose slots they show) is finalised when
 * the last of those views dies.
 *
 * Threads. Everything here runs with the GIL held, except the waits. A reader waits with
 * shmchan_wait_head_spin, which reads only the channel, so other threads may use the reader (take
 * and release messages) meanwhile; the message is then taken under the GIL. A writer waits inside
 * a blocking reserve, which does use the writer: the thread owns the writer's `turn` lock and sets
 * `holder`, and every other use of that writer waits for the turn. Every wait runs in slices of at
 * most 100 ms; between slices the thread checks signals, its deadline and whether the handle was
 * closed. Closing interrupts the waits (shmchan_interrupt) and frees nothing until the threads
 * still inside C (the mapping's `holders`) have left it.
 *
 * fork(): a child's copies of the handles are dead (every call raises ChannelClosedError); their
 * descriptors are closed in the child at once, without unlocking what the parent holds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <structmember.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "_capi.h"
#include "shmchan.h"


#define SLICE_NS INT64_C(100000000)   /* a wait returns to Python this often (signals, closing) */
#define BIG_COPY ((uint64_t)1 << 20)   /* copies at least this large run without the GIL */
#define SPIN_FOREVER (INT64_C(1) << 62)
#define SPIN_DEFAULT INT64_C(100000)   /* the core's default spin, 100 us */
/*
 * A waiting reader first spins this long holding the GIL: an answer that comes within it costs no
 * GIL hand-over (about 0.1 us each way), and 20 us is far below the interpreter's own switch
 * interval (5 ms), so other threads hardly notice. Then it lets the GIL go and waits on.
 */
#define GIL_SPIN_NS INT64_C(20000)
#define FREELIST_MAX 64
#define HOLDERS 8
#define FRAME_TPLS 4 /* Frame header templates a writer keeps (keyframe or not, a few geometries) */

static const struct shmchan_capi *C; /* the core, once shmchan._binding has called _bind() */
static PyObject *raise_for;          /* shmchan._binding.raise_for(rc, what, detail) */
static PyObject *hooks;              /* dict: name -> Python function (frames, tensors) */
static unsigned long fork_generation;
/*
 * Set by an atexit handler: the interpreter is shutting down. Objects that die from then on call
 * nothing in the core (no release, no detach, no unmap): a daemon thread may still be inside it,
 * and held messages stay held as after a crash (a new reader gets them again). The process's exit
 * drops its locks and mappings.
 */
static int exiting;

static PyObject *ShmchanError, *ChannelClosedError, *ChannelEmptyError, *ChannelFullError, *ChannelTimeoutError,
	*ChannelEndedError, *PeerDeadError, *MessageReleasedError, *LappedError, *ChannelBusyError;

/* ---------------------------------------------------------------------------------------------- */
/* time and arguments */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* -1: no deadline */
static int64_t deadline_of(int64_t tns)
{
	return tns < 0 ? -1 : now_ns() + tns;
}

/* Nanoseconds left before `deadline` (-1: none): at most one slice, 0 when it has passed. */
static int64_t slice_left(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return SLICE_NS;
	left = deadline - now_ns();
	if (left <= 0)
		return 0;
	return left < SLICE_NS ? left : SLICE_NS;
}

/*
 * A duration in seconds: None is -1 (for ever); NaN and negative values raise ValueError; values
 * too large for 64-bit nanoseconds are -1 too (for ever), never OverflowError. A positive value is
 * at least 1 ns (0 means "do not wait").
 */
static int seconds_to_ns(PyObject *o, const char *what, int64_t *out)
{
	double t;

	if (o == NULL || o == Py_None) {
		*out = -1;
		return 0;
	}
	if (PyLong_Check(o)) {
		int overflow = 0;
		long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
		if (v == -1 && PyErr_Occurred())
			return -1;
		if (overflow > 0 || v >= 9223372036LL) {
			*out = -1;
			return 0;
		}
		if (overflow < 0 || v < 0)
			goto bad;
		*out = (int64_t)v * 1000000000;
		return 0;
	}
	t = PyFloat_AsDouble(o);
	if (t == -1.0 && PyErr_Occurred()) {
		if (PyErr_ExceptionMatches(PyExc_TypeError)) {
			PyErr_Clear();
			PyErr_Format(PyExc_TypeError, "%s must be None or a number of seconds, not %.100s", what,
				     Py_TYPE(o)->tp_name);
		}
		return -1;
	}
	if (isnan(t) || t < 0)
		goto bad;
	if (t >= 9.2e9) {
		*out = -1;
		return 0;
	}
	*out = (int64_t)(t * 1e9);
	if (*out == 0 && t > 0)
		*out = 1;
	return 0;
bad:
	PyErr_Format(PyExc_ValueError, "%s must be None or a number of seconds >= 0, got %R", what, o);
	return -1;
}

/* A spin: None keeps the default (*out = -2); inf and huge values spin for the whole wait. */
static int spin_to_ns(PyObject *o, int64_t *out)
{
	int64_t ns;

	if (o == NULL || o == Py_None) {
		*out = -2;
		return 0;
	}
	if (seconds_to_ns(o, "spin", &ns))
		return -1;
	*out = ns < 0 || ns > SPIN_FOREVER ? SPIN_FOREVER : ns;
	return 0;
}

/* A non-negative size: an int (not a bool) within [0, limit]. */
static int size_arg(PyObject *o, const char *what, uint64_t limit, uint64_t *out)
{
	unsigned long long v;
	long long sv;
	int overflow = 0;

	if (PyBool_Check(o) || !PyLong_Check(o)) {
		PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(o)->tp_name);
		return -1;
	}
	sv = PyLong_AsLongLongAndOverflow(o, &overflow);
	if (sv == -1 && PyErr_Occurred())
		return -1;
	if (overflow < 0 || (overflow == 0 && sv < 0)) {
		PyErr_Format(PyExc_ValueError, "%s must be >= 0, got %R", what, o);
		return -1;
	}
	if (overflow == 0) {
		v = (unsigned long long)sv;
	} else {
		v = PyLong_AsUnsignedLongLong(o);
		if (v == (unsigned long long)-1 && PyErr_Occurred()) {
			PyErr_Clear();
			v = ULLONG_MAX;
		}
	}
	if (v > limit) {
		PyErr_Format(PyExc_ValueError, "%s %R exceeds %llu", what, o, (unsigned long long)limit);
		return -1;
	}
	*out = v;
	return 0;
}

/* Keyword/positional parsing for the few vectorcall methods: up to 3 parameters by name. */
static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
		      const char *const *names, Py_ssize_t npos_max, Py_ssize_t nkw_total, PyObject **out)
{
	Py_ssize_t i, j;

	for (i = 0; i < nkw_total; i++)
		out[i] = NULL;
	if (nargs > npos_max) {
		PyErr_Format(PyExc_TypeError, "%s() takes at most %zd positional arguments (%zd given)", fname,
			     npos_max, nargs);
		return -1;
	}
	for (i = 0; i < nargs; i++)
		out[i] = args[i];
	if (kwnames) {
		Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
		for (j = 0; j < nk; j++) {
			PyObject *k = PyTuple_GET_ITEM(kwnames, j);
			for (i = 0; i < nkw_total; i++)
				if (PyUnicode_CompareWithASCIIString(k, names[i]) == 0)
					break;
			if (i == nkw_total) {
				PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", fname, k);
				return -1;
			}
			if (out[i]) {
				PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
					     names[i]);
				return -1;
			}
			out[i] = args[nargs + j];
		}
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* types */

typedef struct MappingObject MappingObject;
typedef struct WriterObject WriterObject;
typedef struct ReaderObject ReaderObject;
typedef struct SlotObject SlotObject;
typedef struct MessageObject MessageObject;
typedef struct TokenObject TokenObject;

/*
 * The views of one end (reader or writer). A token is the exporter of a message's (or slot's)
 * memory; it lives exactly as long as some view of it does. To save allocating a token and a
 * memoryview per message, each slot keeps the last memoryview made for it in `cache` and reuses it
 * for the next message in that slot once nothing outside the cache refers to it. A token that is
 * not in the cache lives only through views: it is "pinned" (counted in pins[slot] and live).
 */
typedef struct {
	PyObject **cache; /* per slot: a memoryview kept for reuse, or NULL (no cache: NULL array) */
	uint32_t *pins;   /* per slot: pinned tokens */
	Py_ssize_t live;  /* pinned tokens in all */
	uint32_t capacity;
	int readonly;
} ViewSet;

struct MappingObject {
	PyObject_HEAD
	shmchan_channel *ch;   /* NULL once freed */
	PyObject *where;       /* str: names the channel in messages */
	WriterObject *writer;  /* borrowed: the writer attached through this handle (until detached) */
	ReaderObject *reader;  /* borrowed */
	uint64_t slot_size;
	uint32_t capacity, kind, policy;
	int closed;            /* closed for the user */
	int forked;            /* a copy inherited across fork(): dead */
	Py_ssize_t holders;    /* threads inside a call into the core with the GIL released */
	MappingObject *next, *prev; /* every live mapping, for the fork handler */
	PyObject *weakreflist;
};

struct WriterObject {
	PyObject_HEAD
	MappingObject *m;
	PyObject *channel; /* the Python handle it was attached through (for .channel) */
	shmchan_writer *w; /* NULL once detached */
	SlotObject *open;  /* borrowed: the open reservation */
	ViewSet vs;
	int closed;
	int holder;        /* a thread is inside a blocking call on this writer, GIL released */
	PyThread_type_lock turn; /* owned by the thread making a blocking call */
	PyObject *frame_tpl[FRAME_TPLS]; /* FrameTemplate objects reserve_frame answers in C */
	unsigned frame_tpl_next;
	PyObject *weakreflist;
};

struct SlotObject {
	PyObject_HEAD
	WriterObject *writer;
	char *data;
	uint64_t nbytes, pos;
	uint32_t index;
	int open;
	TokenObject *token; /* borrowed: the token of this slot's views */
};

struct ReaderObject {
	PyObject_HEAD
	MappingObject *m;
	PyObject *channel;
	shmchan_reader *r;
	int64_t spin_ns;
	ViewSet vs;
	int closed;
	MessageObject *last;    /* borrowed: the message iteration handed out last */
	struct shmchan_msg *batch;
	uint32_t batch_cap;
	int stashed;            /* a message taken but not delivered (recv_into with a short buffer) */
	struct shmchan_msg stash;
	/* Messages held (received, not released), by the thread that took them: when every slot is
	   held, a thread whose own messages fill the ring would wait for ever (BufferError), while one
	   whose neighbours hold some waits for them to release. The first HOLDERS threads are counted
	   apart; the rest together under ident 0. */
	Py_ssize_t held;
	struct {
		unsigned long ident;
		Py_ssize_t n;
	} holders[HOLDERS];
	struct frame_cache *frame_cache; /* the last Frame header Python validated (Message.frame) */
	PyObject *weakreflist;
};

enum { MSG_HELD = 0, MSG_DONE = 2 };

/* A number for the calling thread, never reused in this process (thread idents are). */
static unsigned long thread_number(void)
{
	static _Atomic unsigned long next = 1;
	static _Thread_local unsigned long mine;

	if (!mine)
		mine = atomic_fetch_add(&next, 1);
	return mine;
}

static void held_add(ReaderObject *rd, unsigned long ident, Py_ssize_t d)
{
	int i, free_i = -1;

	rd->held += d;
	for (i = 0; i < HOLDERS; i++) {
		if (rd->holders[i].n && rd->holders[i].ident == ident) {
			rd->holders[i].n += d;
			return;
		}
		if (!rd->holders[i].n && free_i < 0)
			free_i = i;
	}
	if (d > 0 && free_i >= 0) {
		rd->holders[free_i].ident = ident;
		rd->holders[free_i].n = d;
	}
	/* otherwise an uncounted thread: it only ever shows as "held by others" */
}

/* Whether threads other than this one hold messages of the reader. */
static int held_by_others(ReaderObject *rd)
{
	unsigned long me = thread_number();

	for (int i = 0; i < HOLDERS; i++)
		if (rd->holders[i].n && rd->holders[i].ident == me)
			return rd->held > rd->holders[i].n;
	return rd->held > 0;
}

struct MessageObject {
	PyObject_HEAD
	ReaderObject *reader;
	char *data;
	uint64_t pos, len;
	uint32_t slot, lost;
	int state;
	int from_iter;
	unsigned long taker; /* the thread that received it */
	TokenObject *token;  /* borrowed: the token of this message's views */
};

/* The object every view of one message (or slot) is made from: memoryviews hold it as their
   exporter and numpy arrays as their base, so it lives exactly as long as some view does. */
struct TokenObject {
	PyObject_HEAD
	PyObject *end;          /* the Reader or Writer (strong): no view outlives the mapping */
	ViewSet *vs;            /* the end's views */
	TokenObject **holder;   /* the `token` field of the Message or Slot it serves now, or NULL */
	PyObject *mv;           /* borrowed: its memoryview while that is in the cache */
	char *data;
	Py_ssize_t len;
	uint64_t pos;           /* the message it shows */
	uint32_t index;         /* its slot */
	int readonly;
	int pinned;             /* counted in vs->pins / vs->live */
	int pending;            /* release `pos` when it dies (its message was released while viewed) */
};

static PyTypeObject MappingType, WriterType, ReaderType, SlotType, MessageType, TokenType;
struct frame_cache;
static void frame_cache_free(struct frame_cache *fc);

static MappingObject *all_mappings;
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---------------------------------------------------------------------------------------------- */
/* errors */

static PyObject *closed_error(MappingObject *m, const char *what)
{
	if (m && m->forked)
		PyErr_Format(ChannelClosedError,
			     "this handle of channel %R was inherited across fork(): it is closed in this process "
			     "(open the channel again here)",
			     m->where);
	else
		PyErr_Format(ChannelClosedError, "the %s is closed", what);
	return NULL;
}

/* Raise for return code rc through shmchan._binding.raise_for (the rare errors). */
static PyObject *raise_rc(int rc, MappingObject *m, const char *doing)
{
	PyObject *what, *detail, *res;
	const char *d = "";

	if (m && m->ch && C && (rc == -2003 /* SHMCHAN_ECORRUPT */))
		d = C->channel_diag(m->ch);
	what = PyUnicode_FromFormat("%s %R", doing, m ? m->where : Py_None);
	detail = PyUnicode_FromString(d);
	if (what && detail) {
		res = PyObject_CallFunction(raise_for, "iOO", rc, what, detail);
		Py_XDECREF(res);
		if (res && !PyErr_Occurred())
			PyErr_Format(ShmchanError, "%s: error %d", doing, rc);
	}
	Py_XDECREF(what);
	Py_XDECREF(detail);
	return NULL;
}

static PyObject *peer_dead(MappingObject *m, int writer_side)
{
	struct shmchan_stats st;

	memset(&st, 0, sizeof(st));
	if (m->ch)
		C->stats(m->ch, &st);
	if (writer_side)
		PyErr_Format(PeerDeadError, "the writer of channel %R (pid %u) died; every message it committed was received",
			     m->where, st.writer_pid);
	else
		PyErr_Format(PeerDeadError, "the reader of channel %R (pid %u) died while the ring is full", m->where,
			     st.reader_pid);
	return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Mapping */

static void mapping_free_channel(MappingObject *m)
{
	if (exiting)
		return;
	if (m->ch) {
		C->close(m->ch);
		m->ch = NULL;
	}
}

/* Frees the C handle once the user closed it and neither side still needs it for live views. */
static void mapping_maybe_finalize(MappingObject *m)
{
	if (m->closed && m->writer == NULL && m->reader == NULL && m->holders == 0)
		mapping_free_channel(m);
}

static PyObject *mapping_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"address", "where", NULL};
	unsigned long long address;
	PyObject *where;
	MappingObject *m;
	struct shmchan_info info;

	if (!C) {
		PyErr_SetString(PyExc_RuntimeError, "shmchan._core is not bound to the core yet");
		return NULL;
	}
	if (!PyArg_ParseTupleAndKeywords(args, kwds, "KU", kwlist, &address, &where))
		return NULL;
	if (address == 0) {
		PyErr_SetString(PyExc_ValueError, "a NULL channel handle");
		return NULL;
	}
	m = (MappingObject *)type->tp_alloc(type, 0);
	if (!m)
		return NULL;
	m->ch = (shmchan_channel *)(uintptr_t)address;
	Py_INCREF(where);
	m->where = where;
	memset(&info, 0, sizeof(info));
	C->info(m->ch, &info);
	m->slot_size = info.slot_size;
	m->capacity = info.capacity;
	m->kind = info.kind;
	m->policy = info.policy;
	pthread_mutex_lock(&all_lock);
	m->next = all_mappings;
	if (all_mappings)
		all_mappings->prev = m;
	all_mappings = m;
	pthread_mutex_unlock(&all_lock);
	return (PyObject *)m;
}

static void mapping_dealloc(MappingObject *m)
{
	if (m->weakreflist)
		PyObject_ClearWeakRefs((PyObject *)m);
	pthread_mutex_lock(&all_lock);
	if (m->prev)
		m->prev->next = m->next;
	else if (all_mappings == m)
		all_mappings = m->next;
	if (m->next)
		m->next->prev = m->prev;
	pthread_mutex_unlock(&all_lock);
	/* nothing refers to the mapping any more: no writer, reader, view or waiting thread */
	mapping_free_channel(m);
	Py_XDECREF(m->where);
	Py_TYPE(m)->tp_free((PyObject *)m);
}

static int mapping_usable(MappingObject *m)
{
	if (m->closed || m->forked || !m->ch) {
		closed_error(m, "channel");
		return 0;
	}
	return 1;
}

static void writer_user_close(WriterObject *self);
static void reader_user_close(ReaderObject *self);

/* Sleep a little with the GIL released: waiting for threads to leave the core. */
static void nap(void)
{
	struct timespec ts = {0, 200000};

	Py_BEGIN_ALLOW_THREADS
	nanosleep(&ts, NULL);
	Py_END_ALLOW_THREADS
}

static PyObject *mapping_close(MappingObject *m, PyObject *unused)
{
	if (m->closed)
		Py_RETURN_NONE;
	m->closed = 1;
	if (m->forked || !m->ch) {
		if (m->writer)
			m->writer->w = NULL;
		if (m->reader)
			m->reader->r = NULL;
		m->writer = NULL;
		m->reader = NULL;
		mapping_maybe_finalize(m);
		Py_RETURN_NONE;
	}
	/* end the waits of other threads and let them leave the core before anything is freed */
	while (m->holders > 0) {
		C->interrupt(m->ch);
		nap();
	}
	if (m->writer)
		writer_user_close(m->writer);
	if (m->reader)
		reader_user_close(m->reader);
	mapping_maybe_finalize(m);
	Py_RETURN_NONE;
}

static PyObject *mapping_hold(MappingObject *m, PyObject *unused)
{
	if (!mapping_usable(m))
		return NULL;
	m->holders++;
	return PyLong_FromVoidPtr(m->ch);
}

static PyObject *mapping_unhold(MappingObject *m, PyObject *unused)
{
	if (m->holders > 0)
		m->holders--;
	mapping_maybe_finalize(m);
	Py_RETURN_NONE;
}

static PyObject *mapping_get_closed(MappingObject *m, void *c)
{
	return PyBool_FromLong(m->closed || m->forked);
}

static PyObject *mapping_get_forked(MappingObject *m, void *c)
{
	return PyBool_FromLong(m->forked);
}

static PyObject *mapping_get_freed(MappingObject *m, void *c)
{
	return PyBool_FromLong(m->ch == NULL);
}

static PyObject *mapping_get_where(MappingObject *m, void *c)
{
	Py_INCREF(m->where);
	return m->where;
}

static PyObject *mapping_writer(MappingObject *m, PyObject *args, PyObject *kwds);
static PyObject *mapping_reader(MappingObject *m, PyObject *args, PyObject *kwds);

/* asyncio: sleep (on a helper thread) until head leaves `pos`, a wake-up or the timeout; 0 or -errno. */
static PyObject *mapping_wait_head(MappingObject *m, PyObject *args)
{
	unsigned long long pos;
	long long tns;
	int rc;

	if (!PyArg_ParseTuple(args, "KL", &pos, &tns))
		return NULL;
	if (m->closed || m->forked || !m->ch)
		return PyLong_FromLong(-ECANCELED);
	m->holders++;
	Py_BEGIN_ALLOW_THREADS
	rc = C->wait_head_spin(m->ch, (uint64_t)pos, 0, (int64_t)tns);
	Py_END_ALLOW_THREADS
	m->holders--;
	mapping_maybe_finalize(m);
	return PyLong_FromLong(rc);
}

/* State boards: copy the newest value into a writable buffer; (length, version); version 0 when
   nothing was published yet. */
static PyObject *mapping_state_read(MappingObject *m, PyObject *arg)
{
	Py_buffer b;
	uint64_t len = 0, version = 0;
	int rc;

	if (!mapping_usable(m))
		return NULL;
	if (PyObject_GetBuffer(arg, &b, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
		return NULL;
	rc = C->state_read(m->ch, b.buf, (uint64_t)b.len, &len, &version);
	PyBuffer_Release(&b);
	if (rc == -ENODATA)
		return Py_BuildValue("(KK)", 0ULL, 0ULL);
	if (rc == -EBUSY) {
		PyErr_Format(ShmchanError, "cannot read state board %R: the writer replaced the value faster than it "
			     "could be copied", m->where);
		return NULL;
	}
	if (rc)
		return raise_rc(rc, m, "cannot read state board");
	return Py_BuildValue("(KK)", (unsigned long long)len, (unsigned long long)version);
}

/* State boards: sleep until the version differs from `version`; return the new one. */
static PyObject *mapping_state_wait(MappingObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"version", "timeout"};
	PyObject *a[2];
	uint64_t version, now = 0;
	int64_t tns, deadline;
	int rc, first = 1;

	if (parse_args("wait_for_change", args, nargs, kwnames, names, 2, 2, a))
		return NULL;
	if (!a[0]) {
		PyErr_SetString(PyExc_TypeError, "wait_for_change() needs a version");
		return NULL;
	}
	if (size_arg(a[0], "version", UINT64_MAX, &version) || seconds_to_ns(a[1], "timeout", &tns))
		return NULL;
	if (!mapping_usable(m))
		return NULL;
	deadline = deadline_of(tns);
	for (;;) {
		int64_t slice = tns == 0 ? 0 : slice_left(deadline);
		if (!first && slice == 0) {
			rc = -ETIMEDOUT;
			break;
		}
		first = 0;
		m->holders++;
		Py_BEGIN_ALLOW_THREADS
		rc = C->state_wait(m->ch, version, slice, &now);
		Py_END_ALLOW_THREADS
		m->holders--;
		if (m->closed) {
			mapping_maybe_finalize(m);
			return closed_error(m, "state board");
		}
		if (rc != -ETIMEDOUT && rc != -EINTR)
			break;
		if (tns == 0)
			break;
		if (PyErr_CheckSignals())
			return NULL;
	}
	if (rc == 0)
		return PyLong_FromUnsignedLongLong(now);
	if (rc == -ETIMEDOUT || rc == -EAGAIN) {
		PyErr_Format(ChannelTimeoutError, "state board %R did not change for the whole timeout", m->where);
		return NULL;
	}
	if (rc == -2004 /* SHMCHAN_EPEERDEAD */) {
		struct shmchan_stats st;
		memset(&st, 0, sizeof(st));
		C->stats(m->ch, &st);
		PyErr_Format(PeerDeadError, "the writer of state board %R (pid %u) died", m->where, st.writer_pid);
		return NULL;
	}
	if (rc == -ECANCELED)
		return closed_error(m, "state board");
	return raise_rc(rc, m, "cannot wait on state board");
}

static PyObject *no_pickle(PyObject *self, PyObject *unused)
{
	PyErr_Format(PyExc_TypeError,
		     "cannot pickle a shmchan %.50s: a handle belongs to the process that opened it; pass the "
		     "channel's name (or path) and open it in the other process",
		     Py_TYPE(self)->tp_name + 13 /* after "shmchan._core." */);
	return NULL;
}

static PyMethodDef mapping_methods[] = {
	{"close", (PyCFunction)mapping_close, METH_NOARGS, "Close for the user; free the C handle once no view needs it."},
	{"hold", (PyCFunction)mapping_hold, METH_NOARGS, "The C handle's address, held until unhold() (close waits)."},
	{"unhold", (PyCFunction)mapping_unhold, METH_NOARGS, "End a hold()."},
	{"writer", (PyCFunction)(void (*)(void))mapping_writer, METH_VARARGS | METH_KEYWORDS, "Attach the writer."},
	{"reader", (PyCFunction)(void (*)(void))mapping_reader, METH_VARARGS | METH_KEYWORDS, "Attach a reader."},
	{"wait_head", (PyCFunction)mapping_wait_head, METH_VARARGS, "asyncio: wait for head to leave pos."},
	{"state_read", (PyCFunction)mapping_state_read, METH_O, "State boards: copy the newest value."},
	{"state_wait", (PyCFunction)(void (*)(void))mapping_state_wait, METH_FASTCALL | METH_KEYWORDS,
	 "State boards: wait for a new version."},
	{"__reduce__", no_pickle, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef mapping_getset[] = {
	{"closed", (getter)mapping_get_closed, NULL, "Closed for the user (or inherited across fork).", NULL},
	{"forked", (getter)mapping_get_forked, NULL, "Inherited across fork(): dead in this process.", NULL},
	{"freed", (getter)mapping_get_freed, NULL, "The C handle was freed (nothing needs it any more).", NULL},
	{"where", (getter)mapping_get_where, NULL, "The channel's name or path.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

/* ---------------------------------------------------------------------------------------------- */
/* tokens and views */

#define CACHE_MAX_SLOTS 65536u /* larger rings make a token and a memoryview per message */

static void reader_view_died(ReaderObject *rd, TokenObject *t);
static void writer_maybe_finalize(WriterObject *self);
static void reader_maybe_finalize(ReaderObject *self);

static int viewset_init(ViewSet *vs, uint32_t capacity, int readonly)
{
	vs->capacity = capacity;
	vs->readonly = readonly;
	vs->live = 0;
	vs->pins = PyMem_Calloc(capacity, sizeof(uint32_t));
	vs->cache = capacity <= CACHE_MAX_SLOTS ? PyMem_Calloc(capacity, sizeof(PyObject *)) : NULL;
	if (!vs->pins || (capacity <= CACHE_MAX_SLOTS && !vs->cache)) {
		PyMem_Free(vs->pins);
		PyMem_Free(vs->cache);
		vs->pins = NULL;
		vs->cache = NULL;
		PyErr_NoMemory();
		return -1;
	}
	return 0;
}

/* The token of a cached memoryview, or NULL when the memoryview was released (its token is gone). */
static TokenObject *cached_token(PyObject *mv)
{
	PyMemoryViewObject *v = (PyMemoryViewObject *)mv;

	if (v->flags & _Py_MEMORYVIEW_RELEASED)
		return NULL;
	return (TokenObject *)v->mbuf->master.obj;
}

/*
 * Whether anything but the cache refers to a cached memoryview's memory: the memoryview itself,
 * views made from it (slices, memoryviews, numpy arrays: they hold its managed buffer) or arrays
 * based on its token. Exact, since each of those holds a reference.
 */
static int view_is_shared(PyObject *mv)
{
	PyMemoryViewObject *v = (PyMemoryViewObject *)mv;

	if (v->flags & _Py_MEMORYVIEW_RELEASED)
		return 0;
	return Py_REFCNT(mv) > 1 || v->exports > 0 || Py_REFCNT(v->mbuf) > 1 || Py_REFCNT(v->mbuf->master.obj) > 1;
}

static void pin(TokenObject *t)
{
	if (!t->pinned) {
		t->pinned = 1;
		t->vs->pins[t->index]++;
		t->vs->live++;
	}
}

/* Take slot `index`'s memoryview out of the cache; views that still hold it keep its token, pinned. */
static void viewset_drop(ViewSet *vs, uint32_t index)
{
	PyObject *mv = vs->cache[index];
	TokenObject *t = cached_token(mv);

	vs->cache[index] = NULL;
	if (t) {
		t->mv = NULL;
		if (view_is_shared(mv))
			pin(t);
	}
	Py_DECREF(mv); /* when nothing else holds it, the token dies here */
}

/* Whether views of slot `index` are alive (a pinned token, or a shared cached memoryview). */
static int viewset_slot_viewed(ViewSet *vs, uint32_t index)
{
	return vs->pins[index] > 0 || (vs->cache && vs->cache[index] && view_is_shared(vs->cache[index]));
}

/* Empty the cache (the end is closing): what views still hold stays pinned. */
static void viewset_drop_all(ViewSet *vs)
{
	if (!vs->cache)
		return;
	for (uint32_t i = 0; i < vs->capacity; i++)
		if (vs->cache[i])
			viewset_drop(vs, i);
}

static void viewset_free(ViewSet *vs)
{
	if (vs->cache) {
		for (uint32_t i = 0; i < vs->capacity; i++)
			Py_XDECREF(vs->cache[i]);
		PyMem_Free(vs->cache);
		vs->cache = NULL;
	}
	PyMem_Free(vs->pins);
	vs->pins = NULL;
}

/*
 * The token for the views of a message or slot (its `field`): the one it has, else the slot's cached
 * one when nothing refers to it any more, else a new one (put in the cache when the slot's entry is
 * free, else pinned). New reference.
 */
static TokenObject *acquire_token(PyObject *end, ViewSet *vs, TokenObject **field, char *data, uint64_t len,
				  uint64_t pos, uint32_t index)
{
	TokenObject *t = *field;
	PyObject *mv;

	if (t) {
		Py_INCREF(t);
		return t;
	}
	mv = vs->cache ? vs->cache[index] : NULL;
	if (mv) {
		TokenObject *c = cached_token(mv);
		if (c && !c->holder && c->data == data && (uint64_t)c->len == len && !view_is_shared(mv)) {
			c->holder = field;
			c->pos = pos;
			*field = c;
			Py_INCREF(c);
			return c;
		}
		if (!c || !c->holder)
			viewset_drop(vs, index); /* of another length, released, or still viewed */
		/* else it serves another message still held in that slot (a lapped reader): leave it */
	}
	t = PyObject_GC_New(TokenObject, &TokenType);
	if (!t)
		return NULL;
	Py_INCREF(end);
	t->end = end;
	t->vs = vs;
	t->holder = field;
	t->mv = NULL;
	t->data = data;
	t->len = (Py_ssize_t)len;
	t->pos = pos;
	t->index = index;
	t->readonly = vs->readonly;
	t->pinned = 0;
	t->pending = 0;
	PyObject_GC_Track(t);
	*field = t;
	if (vs->cache && !vs->cache[index]) {
		mv = PyMemoryView_FromObject((PyObject *)t);
		if (!mv) {
			*field = NULL;
			t->holder = NULL;
			pin(t); /* so that its death is accounted for */
			Py_DECREF(t);
			return NULL;
		}
		vs->cache[index] = mv;
		t->mv = mv;
	} else {
		pin(t);
	}
	return t;
}

/* A memoryview of a message or slot: the cached one when there is one. New reference. */
static PyObject *acquire_view(PyObject *end, ViewSet *vs, TokenObject **field, char *data, uint64_t len,
			      uint64_t pos, uint32_t index)
{
	TokenObject *t = acquire_token(end, vs, field, data, len, pos, index);
	PyObject *mv;

	if (!t)
		return NULL;
	if (t->mv) {
		mv = t->mv;
		Py_INCREF(mv);
	} else {
		mv = PyMemoryView_FromObject((PyObject *)t);
	}
	Py_DECREF(t);
	return mv;
}

/*
 * A message is done with its token (released, or dropped). Returns the token when views of it are
 * still alive (it is then pinned until they die; borrowed), NULL when none are (a cached token
 * stays in the cache, free for the next message of its slot).
 */
static TokenObject *release_token(TokenObject **field)
{
	TokenObject *t = *field;

	if (!t)
		return NULL;
	*field = NULL;
	t->holder = NULL;
	if (t->mv) {
		if (!view_is_shared(t->mv))
			return NULL;
		viewset_drop(t->vs, t->index); /* pins it: the views hold it */
	}
	return t; /* a token outside the cache lives only through views */
}

/* A slot is committed or aborted: its token stays where it is, cached or pinned; before the writer
   reuses the slot it checks that no view of it is alive. */
static void unbind_token(TokenObject **field)
{
	if (*field) {
		(*field)->holder = NULL;
		*field = NULL;
	}
}

/*
 * The cache makes a cycle: end -> cache -> memoryview -> managed buffer -> token -> end. close()
 * empties the cache; an end dropped unclosed is collected by the GC, which follows the cycle
 * through these traverse functions.
 */
static int token_traverse(TokenObject *t, visitproc visit, void *arg)
{
	Py_VISIT(t->end);
	return 0;
}

static int token_clear(TokenObject *t)
{
	Py_CLEAR(t->end); /* the end is being collected with it: nothing left to account to */
	return 0;
}

static void token_dealloc(TokenObject *t)
{
	PyObject *end = t->end;

	PyObject_GC_UnTrack(t);
	if (t->holder)
		*t->holder = NULL;
	if (end) {
		if (t->pinned) {
			t->vs->pins[t->index]--;
			t->vs->live--;
		}
		if (!exiting) {
			if (PyObject_TypeCheck(end, &WriterType))
				writer_maybe_finalize((WriterObject *)end);
			else
				reader_view_died((ReaderObject *)end, t);
		}
	}
	PyObject_GC_Del(t);
	Py_XDECREF(end);
}

static int token_getbuffer(TokenObject *t, Py_buffer *view, int flags)
{
	return PyBuffer_FillInfo(view, (PyObject *)t, t->data, t->len, t->readonly, flags);
}

static PyBufferProcs token_as_buffer = {(getbufferproc)token_getbuffer, NULL};

/* ---- numpy arrays over a token ---- */

#define DTYPE_CACHE 8
static struct {
	PyObject *key;
	PyArray_Descr *descr;
} dtype_cache[DTYPE_CACHE];
static unsigned dtype_cache_next;
static PyArray_Descr *u8_descr;

/* The descriptor for a dtype argument, cached by the argument's identity (np.uint8, a dtype, "<f4"). */
static PyArray_Descr *descr_of(PyObject *dt)
{
	PyArray_Descr *d = NULL;
	unsigned i;

	if (dt == NULL || dt == Py_None) {
		Py_INCREF(u8_descr);
		return u8_descr;
	}
	for (i = 0; i < DTYPE_CACHE; i++)
		if (dtype_cache[i].key == dt) {
			Py_INCREF(dtype_cache[i].descr);
			return dtype_cache[i].descr;
		}
	if (!PyArray_DescrConverter(dt, &d))
		return NULL;
	if (PyDataType_REFCHK(d)) {
		PyErr_Format(PyExc_TypeError,
			     "dtype %R holds Python object references: an array of it cannot live in shared memory", d);
		Py_DECREF(d);
		return NULL;
	}
	if (PyDataType_ELSIZE(d) == 0) {
		PyErr_Format(PyExc_ValueError, "dtype %R has no size", d);
		Py_DECREF(d);
		return NULL;
	}
	i = dtype_cache_next++ % DTYPE_CACHE;
	Py_XDECREF(dtype_cache[i].key);
	Py_XDECREF(dtype_cache[i].descr);
	Py_INCREF(dt);
	Py_INCREF(d);
	dtype_cache[i].key = dt;
	dtype_cache[i].descr = d;
	return d;
}

/*
 * An array of `shape` (None: 1-D over the rest; an int; a sequence of ints) and `dtype` at byte
 * `offset` of [data, data + len), based on the token (made on demand by get_token).
 */
static PyObject *make_ndarray(char *data, uint64_t len, int readonly, PyObject *shape, PyObject *dtype,
			      PyObject *offset_o, TokenObject *(*get_token)(PyObject *), PyObject *owner)
{
	npy_intp dims[NPY_MAXDIMS];
	int nd, i;
	uint64_t offset = 0, need, elsize;
	PyArray_Descr *d;
	PyObject *arr;
	TokenObject *t;

	if (offset_o && size_arg(offset_o, "offset", UINT64_MAX, &offset))
		return NULL;
	if (offset > len) {
		PyErr_Format(PyExc_ValueError, "offset %llu outside a message of %llu bytes", (unsigned long long)offset,
			     (unsigned long long)len);
		return NULL;
	}
	d = descr_of(dtype);
	if (!d)
		return NULL;
	elsize = (uint64_t)PyDataType_ELSIZE(d);
	if (shape == NULL || shape == Py_None) {
		nd = 1;
		dims[0] = (npy_intp)((len - offset) / elsize);
	} else if (PyLong_Check(shape) && !PyBool_Check(shape)) {
		uint64_t n;
		if (size_arg(shape, "shape", (uint64_t)NPY_MAX_INTP, &n))
			goto fail;
		nd = 1;
		dims[0] = (npy_intp)n;
	} else {
		PyObject *seq = PySequence_Fast(shape, "shape must be None, an int or a sequence of ints");
		if (!seq)
			goto fail;
		nd = (int)PySequence_Fast_GET_SIZE(seq);
		if (nd > NPY_MAXDIMS) {
			Py_DECREF(seq);
			PyErr_Format(PyExc_ValueError, "a shape of %d dimensions (numpy allows %d)", nd, NPY_MAXDIMS);
			goto fail;
		}
		for (i = 0; i < nd; i++) {
			uint64_t n;
			if (size_arg(PySequence_Fast_GET_ITEM(seq, i), "shape", (uint64_t)NPY_MAX_INTP, &n)) {
				Py_DECREF(seq);
				goto fail;
			}
			dims[i] = (npy_intp)n;
		}
		Py_DECREF(seq);
	}
	need = elsize;
	for (i = 0; i < nd; i++)
		if (__builtin_mul_overflow(need, (uint64_t)dims[i], &need)) {
			need = UINT64_MAX;
			break;
		}
	if (need > len - offset) {
		PyObject *sh = PyTuple_New(nd);
		for (i = 0; sh && i < nd; i++)
			PyTuple_SET_ITEM(sh, i, PyLong_FromSsize_t(dims[i]));
		PyErr_Format(PyExc_ValueError,
			     "an array of shape %R and dtype %R needs more than the %llu bytes the message has at "
			     "offset %llu",
			     sh ? sh : Py_None, d, (unsigned long long)len, (unsigned long long)offset);
		Py_XDECREF(sh);
		goto fail;
	}
	t = get_token(owner);
	if (!t)
		goto fail;
	/* steals the reference to d */
	arr = PyArray_NewFromDescr(&PyArray_Type, d, nd, dims, NULL, data + offset,
				   readonly ? 0 : NPY_ARRAY_WRITEABLE, NULL);
	if (!arr) {
		Py_DECREF(t);
		return NULL;
	}
	PyArray_UpdateFlags((PyArrayObject *)arr, NPY_ARRAY_UPDATE_ALL);
	if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)t) < 0) { /* steals t */
		Py_DECREF(arr);
		return NULL;
	}
	return arr;
fail:
	Py_DECREF(d);
	return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* Writer */

static int writer_usable(WriterObject *self)
{
	if (self->closed || !self->w || self->m->closed || self->m->forked) {
		closed_error(self->m, "writer");
		return 0;
	}
	return 1;
}

static int writer_usable(WriterObject *self);

/*
 * Take the writer's turn, waiting (GIL released, in slices) while another thread makes a blocking
 * call on it. 0; 1 when the deadline passed first; -1 with an exception (signal, closed).
 */
static int writer_take_turn(WriterObject *self, int64_t deadline)
{
	if (PyThread_acquire_lock(self->turn, NOWAIT_LOCK))
		return 0;
	for (;;) {
		PyLockStatus st;
		int64_t slice = slice_left(deadline);
		if (slice == 0)
			return 1;
		Py_BEGIN_ALLOW_THREADS
		st = PyThread_acquire_lock_timed(self->turn, slice / 1000 + 1, 0);
		Py_END_ALLOW_THREADS
		if (st == PY_LOCK_ACQUIRED)
			return 0;
		if (PyErr_CheckSignals() || !writer_usable(self))
			return -1;
	}
}

/* Detach the C writer, or (when views of its slots live) end the stream and detach later. */
static void writer_user_close(WriterObject *self)
{
	self->closed = 1;
	if (!self->w)
		return;
	if (self->open) {
		self->open->open = 0;
		unbind_token(&self->open->token);
		self->open = NULL;
		C->abort(self->w);
	}
	while (self->holder) { /* another thread is blocked in reserve/send */
		C->writer_interrupt(self->w);
		nap();
	}
	viewset_drop_all(&self->vs);
	if (self->vs.live > 0) {
		C->writer_end(self->w);
		return;
	}
	C->writer_close(self->w);
	self->w = NULL;
	if (self->m->writer == self)
		self->m->writer = NULL;
}

static void writer_maybe_finalize(WriterObject *self)
{
	if (self->closed && self->vs.live == 0 && self->w) {
		C->writer_close(self->w);
		self->w = NULL;
		if (self->m->writer == self)
			self->m->writer = NULL;
		mapping_maybe_finalize(self->m);
	}
}

static PyObject *mapping_writer(MappingObject *m, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"cls", "spin", "channel", NULL};
	PyObject *cls = (PyObject *)&WriterType, *spin = Py_None, *channel = Py_None;
	WriterObject *self;
	shmchan_writer *w;
	int64_t spin_ns;
	int rc;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOO", kwlist, &cls, &spin, &channel))
		return NULL;
	if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &WriterType)) {
		PyErr_SetString(PyExc_TypeError, "cls must be a subclass of shmchan Writer");
		return NULL;
	}
	if (spin_to_ns(spin, &spin_ns)) /* every argument is checked before anything is attached */
		return NULL;
	if (!mapping_usable(m))
		return NULL;
	if (m->writer) {
		PyErr_Format(ChannelBusyError, "channel %R already has a writer on this handle%s", m->where,
			     m->writer->closed ? " (a closed one whose slot views are still alive)" : "");
		return NULL;
	}
	rc = C->writer_attach(m->ch, &w);
	if (rc) {
		if (rc == -EBUSY) {
			PyErr_Format(ChannelBusyError, "cannot attach a writer to %R: another writer is attached", m->where);
			return NULL;
		}
		return raise_rc(rc, m, "cannot attach a writer to");
	}
	self = (WriterObject *)((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0);
	if (self) {
		self->turn = PyThread_allocate_lock();
		if (!self->turn || viewset_init(&self->vs, m->capacity, 0)) {
			if (!self->turn)
				PyErr_NoMemory();
			C->writer_close(w);
			Py_DECREF(self);
			return NULL;
		}
	} else {
		C->writer_close(w);
		return NULL;
	}
	Py_INCREF(m);
	self->m = m;
	self->w = w;
	Py_INCREF(channel);
	self->channel = channel;
	if (spin_ns != -2)
		C->writer_set_spin(w, spin_ns);
	m->writer = self;
	return (PyObject *)self;
}

static int viewset_traverse(ViewSet *vs, visitproc visit, void *arg)
{
	if (vs->cache)
		for (uint32_t i = 0; i < vs->capacity; i++)
			Py_VISIT(vs->cache[i]);
	return 0;
}

static void viewset_clear(ViewSet *vs)
{
	if (vs->cache)
		for (uint32_t i = 0; i < vs->capacity; i++)
			Py_CLEAR(vs->cache[i]);
}

static int writer_traverse(WriterObject *self, visitproc visit, void *arg)
{
	Py_VISIT(self->channel); /* (a heap subclass's subtype_traverse visits the type) */
	for (int i = 0; i < FRAME_TPLS; i++)
		Py_VISIT(self->frame_tpl[i]);
	return viewset_traverse(&self->vs, visit, arg);
}

static int writer_clear(WriterObject *self)
{
	Py_CLEAR(self->channel);
	for (int i = 0; i < FRAME_TPLS; i++)
		Py_CLEAR(self->frame_tpl[i]);
	viewset_clear(&self->vs);
	return 0;
}

static void writer_dealloc(WriterObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);

	PyObject_GC_UnTrack(self);
	Py_CLEAR(self->channel);
	if (self->weakreflist)
		PyObject_ClearWeakRefs((PyObject *)self);
	if (self->w && !self->m->forked && !exiting) {
		/* no slot object and no view is left (they hold this writer) */
		C->writer_close(self->w);
	}
	self->w = NULL;
	if (self->m && self->m->writer == self)
		self->m->writer = NULL;
	if (self->m)
		mapping_maybe_finalize(self->m);
	if (self->turn)
		PyThread_free_lock(self->turn);
	for (int i = 0; i < FRAME_TPLS; i++)
		Py_CLEAR(self->frame_tpl[i]);
	viewset_free(&self->vs);
	Py_XDECREF(self->m);
	tp->tp_free((PyObject *)self); /* (a heap subclass's subtype_dealloc drops the type) */
}

/* The slot the next commit uses (for the views check). */
static uint32_t writer_next_index(WriterObject *self)
{
	uint64_t pos = C->writer_position(self->w);

	if (self->m->kind == SHMCHAN_KIND_STATE)
		return (uint32_t)((pos + 1) & 1);
	return (uint32_t)(pos & (self->m->capacity - 1));
}

/* Refuse to rewrite a slot that views of an earlier message of ours still show. */
static int writer_check_views(WriterObject *self)
{
	uint32_t s = writer_next_index(self);

	if (!viewset_slot_viewed(&self->vs, s))
		return 0;
	PyErr_Format(PyExc_BufferError,
		     "slot %u of %R is next, but views of the message written in it %u messages ago are still alive; "
		     "delete them (or copy what you need) first",
		     s, self->m->where, self->m->capacity);
	return -1;
}

/*
 * Reserve nbytes: without waiting if possible, else in slices with the GIL released (the thread
 * takes the writer's turn). 0, or -1 with an exception set.
 */
static int writer_reserve(WriterObject *self, uint64_t nbytes, int64_t tns, int64_t deadline, void **data,
			  uint32_t *slot)
{
	int rc;

	if (!self->holder) {
		rc = C->try_reserve(self->w, nbytes, data, slot);
		if (rc != -EAGAIN)
			goto done;
		if (tns == 0) { /* not waiting: learn whether the reader died (a system call) */
			rc = C->reserve(self->w, nbytes, 0, data, slot);
			goto done;
		}
	} else if (tns == 0) {
		rc = -EAGAIN; /* another thread is blocked in this writer: the ring is full */
		goto done;
	}
	rc = writer_take_turn(self, deadline);
	if (rc < 0)
		return -1;
	if (rc > 0) {
		rc = -ETIMEDOUT;
		goto done;
	}
	for (int first = 1;; first = 0) {
		int64_t slice = slice_left(deadline);
		if (!writer_usable(self)) {
			PyThread_release_lock(self->turn);
			return -1;
		}
		if (slice == 0) {
			rc = tns == 0 ? -EAGAIN : -ETIMEDOUT;
			break;
		}
		if (!first)
			C->writer_continue_wait(self->w);
		self->holder = 1;
		self->m->holders++;
		Py_BEGIN_ALLOW_THREADS
		rc = C->reserve(self->w, nbytes, slice, data, slot);
		Py_END_ALLOW_THREADS
		self->holder = 0;
		self->m->holders--;
		if (rc != -ETIMEDOUT && rc != -EINTR)
			break;
		PyThread_release_lock(self->turn); /* a signal handler may use this writer */
		if (PyErr_CheckSignals())
			return -1;
		rc = writer_take_turn(self, deadline);
		if (rc < 0)
			return -1;
		if (rc > 0) {
			rc = -ETIMEDOUT;
			goto done;
		}
	}
	PyThread_release_lock(self->turn);
done:
	if (rc == 0)
		return 0;
	if (rc == -ECANCELED || !writer_usable(self)) {
		PyErr_Clear();
		closed_error(self->m, "writer");
		return -1;
	}
	if (rc == -EAGAIN)
		PyErr_Format(ChannelFullError, "channel %R is full", self->m->where);
	else if (rc == -ETIMEDOUT)
		PyErr_Format(ChannelTimeoutError, "channel %R stayed full for the whole timeout", self->m->where);
	else if (rc == -2004 /* SHMCHAN_EPEERDEAD */)
		peer_dead(self->m, 0);
	else if (rc == -EALREADY)
		PyErr_SetString(ShmchanError, "a slot is already reserved: commit or abort it first");
	else
		raise_rc(rc, self->m, "cannot write to");
	return -1;
}

static SlotObject *slot_freelist[FREELIST_MAX];
static int slot_nfree;
static SlotObject *slot_new(WriterObject *self, void *data, uint32_t index, uint64_t nbytes);

static PyObject *writer_reserve_method(WriterObject *self, PyObject *const *args, Py_ssize_t nargs,
				       PyObject *kwnames)
{
	static const char *const names[] = {"nbytes", "timeout"};
	PyObject *a[2];
	uint64_t nbytes;
	int64_t tns;
	void *data;
	uint32_t index;

	if (parse_args("reserve", args, nargs, kwnames, names, 2, 2, a))
		return NULL;
	if (seconds_to_ns(a[1], "timeout", &tns))
		return NULL;
	if (a[0] && a[0] != Py_None) {
		if (size_arg(a[0], "nbytes", UINT64_MAX, &nbytes))
			return NULL;
		if (nbytes > self->m->slot_size) {
			PyErr_Format(PyExc_ValueError, "a message of %llu bytes does not fit a slot of %llu",
				     (unsigned long long)nbytes, (unsigned long long)self->m->slot_size);
			return NULL;
		}
	} else {
		nbytes = self->m->slot_size;
	}
	if (!writer_usable(self))
		return NULL;
	if (self->open) {
		PyErr_SetString(ShmchanError, "a slot is already reserved: commit or abort it first");
		return NULL;
	}
	if (writer_check_views(self))
		return NULL;
	if (writer_reserve(self, nbytes, tns, tns == 0 ? now_ns() : deadline_of(tns), &data, &index))
		return NULL;
	return (PyObject *)slot_new(self, data, index, nbytes);
}

/* The Slot object of a reservation just made (aborted if it cannot be made). */
static SlotObject *slot_new(WriterObject *self, void *data, uint32_t index, uint64_t nbytes)
{
	SlotObject *slot;

	if (slot_nfree) {
		slot = slot_freelist[--slot_nfree];
		(void)PyObject_Init((PyObject *)slot, &SlotType);
	} else {
		slot = PyObject_New(SlotObject, &SlotType);
		if (!slot) {
			C->abort(self->w);
			return NULL;
		}
	}
	Py_INCREF(self);
	slot->writer = self;
	slot->data = (char *)data;
	slot->nbytes = nbytes;
	slot->pos = C->writer_position(self->w);
	slot->index = index;
	slot->open = 1;
	slot->token = NULL;
	self->open = slot;
	return slot;
}

/* Copy `len` bytes into a reserved slot; large copies run without the GIL. */
static void copy_in(WriterObject *self, void *dst, const void *src, uint64_t len)
{
	if (len < BIG_COPY) {
		memcpy(dst, src, (size_t)len);
		return;
	}
	self->holder = 1;
	self->m->holders++;
	Py_BEGIN_ALLOW_THREADS
	memcpy(dst, src, (size_t)len);
	Py_END_ALLOW_THREADS
	self->holder = 0;
	self->m->holders--;
}

static int writer_commit_rc(WriterObject *self, int rc)
{
	if (rc == 0)
		return 0;
	raise_rc(rc, self->m, "commit failed on");
	return -1;
}

/* One message: views check, reserve (waiting up to deadline), copy, commit. 0, or -1 with an exception. */
static int writer_send_one(WriterObject *self, PyObject *data, int64_t tns, int64_t deadline)
{
	Py_buffer b;
	void *dst;
	uint32_t index;
	int rc;

	if (PyObject_GetBuffer(data, &b, PyBUF_SIMPLE) < 0)
		return -1;
	if ((uint64_t)b.len > self->m->slot_size) {
		PyErr_Format(PyExc_ValueError, "a message of %zd bytes does not fit a slot of %llu", b.len,
			     (unsigned long long)self->m->slot_size);
		goto fail;
	}
	if (writer_check_views(self))
		goto fail;
	if (writer_reserve(self, (uint64_t)b.len, tns, deadline, &dst, &index))
		goto fail;
	if (b.len)
		copy_in(self, dst, b.buf, (uint64_t)b.len);
	PyBuffer_Release(&b);
	if (!self->w) { /* closed by another thread during a large copy */
		closed_error(self->m, "writer");
		return -1;
	}
	rc = C->commit(self->w, (uint64_t)b.len);
	return writer_commit_rc(self, rc);
fail:
	PyBuffer_Release(&b);
	return -1;
}

static PyObject *writer_send(WriterObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"data", "timeout"};
	PyObject *a[2];
	int64_t tns;

	if (parse_args("send", args, nargs, kwnames, names, 2, 2, a))
		return NULL;
	if (!a[0]) {
		PyErr_SetString(PyExc_TypeError, "send() needs the data to send");
		return NULL;
	}
	if (seconds_to_ns(a[1], "timeout", &tns))
		return NULL;
	if (!writer_usable(self))
		return NULL;
	if (self->open) {
		PyErr_SetString(ShmchanError, "a slot is reserved: commit or abort it before send()");
		return NULL;
	}
	if (writer_send_one(self, a[0], tns, tns == 0 ? now_ns() : deadline_of(tns)))
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *writer_send_batch(WriterObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"messages", "timeout"};
	PyObject *a[2], *seq;
	int64_t tns, deadline;
	Py_ssize_t n, i;

	if (parse_args("send_batch", args, nargs, kwnames, names, 2, 2, a))
		return NULL;
	if (!a[0]) {
		PyErr_SetString(PyExc_TypeError, "send_batch() needs a sequence of messages");
		return NULL;
	}
	if (seconds_to_ns(a[1], "timeout", &tns))
		return NULL;
	if (!writer_usable(self))
		return NULL;
	if (self->open) {
		PyErr_SetString(ShmchanError, "a slot is reserved: commit or abort it before send_batch()");
		return NULL;
	}
	seq = PySequence_Fast(a[0], "send_batch() needs a sequence of bytes-like messages");
	if (!seq)
		return NULL;
	n = PySequence_Fast_GET_SIZE(seq);
	deadline = tns == 0 ? now_ns() : deadline_of(tns);
	for (i = 0; i < n; i++) {
		if (writer_send_one(self, PySequence_Fast_GET_ITEM(seq, i), tns, deadline)) {
			/* what was sent is sent: report it, and raise only when nothing could be */
			if (i > 0 && (PyErr_ExceptionMatches(ChannelFullError) ||
				      PyErr_ExceptionMatches(ChannelTimeoutError))) {
				PyErr_Clear();
				break;
			}
			Py_DECREF(seq);
			return NULL;
		}
	}
	Py_DECREF(seq);
	return PyLong_FromSsize_t(i);
}

static PyObject *writer_close_method(WriterObject *self, PyObject *unused)
{
	if (!self->closed && !self->m->forked) {
		writer_user_close(self);
		mapping_maybe_finalize(self->m);
	}
	self->closed = 1;
	Py_RETURN_NONE;
}

static PyObject *writer_get_closed(WriterObject *self, void *c)
{
	return PyBool_FromLong(self->closed || !self->w || self->m->closed || self->m->forked);
}

static PyObject *writer_get_position(WriterObject *self, void *c)
{
	if (!writer_usable(self))
		return NULL;
	return PyLong_FromUnsignedLongLong(C->writer_position(self->w));
}

static PyObject *writer_get_mapping(WriterObject *self, void *c)
{
	Py_INCREF(self->m);
	return (PyObject *)self->m;
}

static PyObject *writer_get_channel(WriterObject *self, void *c)
{
	PyObject *ch = self->channel ? self->channel : Py_None;
	Py_INCREF(ch);
	return ch;
}

static PyObject *writer_enter(PyObject *self, PyObject *unused)
{
	Py_INCREF(self);
	return self;
}

static PyObject *writer_exit(WriterObject *self, PyObject *args)
{
	return writer_close_method(self, NULL);
}

static PyObject *call_hook(const char *name, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
			   PyObject *kwnames)
{
	PyObject *small[16], **stack = small, *fn = hooks ? PyDict_GetItemString(hooks, name) : NULL, *res;
	Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, i;

	if (!fn) {
		PyErr_Format(PyExc_RuntimeError, "shmchan: %s is not available (shmchan.schema was not imported)", name);
		return NULL;
	}
	if (nargs + nkw + 1 > 16) {
		stack = PyMem_Malloc((size_t)(nargs + nkw + 1) * sizeof(PyObject *));
		if (!stack)
			return PyErr_NoMemory();
	}
	stack[0] = self; /* the hook gets the object first, then the caller's arguments */
	for (i = 0; i < nargs + nkw; i++)
		stack[i + 1] = args[i];
	res = PyObject_Vectorcall(fn, stack, (size_t)(nargs + 1), kwnames);
	if (stack != small)
		PyMem_Free(stack);
	return res;
}

static PyObject *writer_reserve_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
static PyObject *message_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

#define HOOK_METHOD(fname, hook)                                                                        \
	static PyObject *fname(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) \
	{                                                                                               \
		return call_hook(hook, self, args, nargs, kwnames);                                     \
	}
HOOK_METHOD(writer_send_frame, "send_frame")
HOOK_METHOD(writer_reserve_tensor, "reserve_tensor")
HOOK_METHOD(writer_send_tensor, "send_tensor")
HOOK_METHOD(message_tensor, "tensor")

static PyObject *writer_repr(WriterObject *self)
{
	return PyUnicode_FromFormat("<shmchan.Writer of %R%s>", self->m->where,
				    (self->closed || !self->w || self->m->closed) ? " closed" : "");
}

#define FASTKW(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL | METH_KEYWORDS

static PyMethodDef writer_methods[] = {
	{"reserve", FASTKW(writer_reserve_method),
	 "reserve(nbytes=None, timeout=None) -> Slot\n--\n\nReserve the next slot for a message of exactly "
	 "nbytes (default: the slot size). Waits while the ring is full: timeout None for ever, 0 not at all "
	 "(ChannelFullError), else up to that many seconds (ChannelTimeoutError). Raises PeerDeadError if the "
	 "reader died while the ring is full."},
	{"send", FASTKW(writer_send),
	 "send(data, timeout=None)\n--\n\nCopy data (bytes or any contiguous buffer) into the next slot and "
	 "commit it. Waits like reserve()."},
	{"send_batch", FASTKW(writer_send_batch),
	 "send_batch(messages, timeout=None) -> int\n--\n\nSend every message of a sequence in order, in one call; "
	 "the timeout bounds the whole call. Returns how many were sent: fewer than all only when the ring "
	 "stayed full for the timeout after at least one was sent (ChannelFullError/ChannelTimeoutError when "
	 "none could be)."},
	{"reserve_frame", FASTKW(writer_reserve_frame), "Reserve a slot for a Frame message (see shmchan.schema)."},
	{"send_frame", FASTKW(writer_send_frame), "Write a Frame message (see shmchan.schema)."},
	{"reserve_tensor", FASTKW(writer_reserve_tensor), "Reserve a slot for a Tensor message (see shmchan.schema)."},
	{"send_tensor", FASTKW(writer_send_tensor), "Write an array as a Tensor message, one copy (see shmchan.schema)."},
	{"close", (PyCFunction)writer_close_method, METH_NOARGS,
	 "close()\n--\n\nDetach: an open reservation is aborted, and a reader that drains the ring then gets "
	 "ChannelEndedError. Idempotent. While views of slots it wrote are alive, the writer stays attached "
	 "(no other writer can attach) until the last of them dies."},
	{"__enter__", writer_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)writer_exit, METH_VARARGS, NULL},
	{"__reduce__", no_pickle, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef writer_getset[] = {
	{"closed", (getter)writer_get_closed, NULL, "Whether this writer (or its channel) was closed.", NULL},
	{"position", (getter)writer_get_position, NULL,
	 "The stream position the next committed message gets (messages committed on the channel so far, by "
	 "every writer it had). Known to the writer: no system call.",
	 NULL},
	{"channel", (getter)writer_get_channel, NULL, "The channel this writer was attached through.", NULL},
	{"_mapping", (getter)writer_get_mapping, NULL, NULL, NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

/* ---------------------------------------------------------------------------------------------- */
/* Slot */

static int slot_open_check(SlotObject *s)
{
	if (!s->open) {
		PyErr_SetString(MessageReleasedError, "this slot was already committed or aborted");
		return 0;
	}
	if (!writer_usable(s->writer))
		return 0;
	return 1;
}

static TokenObject *slot_token(PyObject *o)
{
	SlotObject *sl = (SlotObject *)o;
	WriterObject *wr = sl->writer;

	return acquire_token((PyObject *)wr, &wr->vs, &sl->token, sl->data, sl->nbytes, sl->pos, sl->index);
}

static PyObject *slot_get_buffer(SlotObject *sl, void *c)
{
	WriterObject *wr = sl->writer;

	if (!slot_open_check(sl))
		return NULL;
	return acquire_view((PyObject *)wr, &wr->vs, &sl->token, sl->data, sl->nbytes, sl->pos, sl->index);
}

static PyObject *slot_ndarray(SlotObject *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"shape", "dtype", "offset"};
	PyObject *a[3];

	if (parse_args("ndarray", args, nargs, kwnames, names, 2, 3, a))
		return NULL;
	if (!slot_open_check(s))
		return NULL;
	return make_ndarray(s->data, s->nbytes, 0, a[0], a[1], a[2], slot_token, (PyObject *)s);
}

static PyObject *slot_commit(SlotObject *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"nbytes"};
	PyObject *a[1];
	uint64_t n;
	WriterObject *wr = s->writer;
	int rc;

	if (parse_args("commit", args, nargs, kwnames, names, 1, 1, a))
		return NULL;
	if (!slot_open_check(s))
		return NULL;
	n = s->nbytes;
	if (a[0] && a[0] != Py_None) {
		if (size_arg(a[0], "nbytes", UINT64_MAX, &n))
			return NULL;
		if (n > s->nbytes) {
			PyErr_Format(PyExc_ValueError, "commit of %llu bytes in a reservation of %llu", (unsigned long long)n,
				     (unsigned long long)s->nbytes);
			return NULL;
		}
	}
	s->open = 0;
	wr->open = NULL;
	unbind_token(&s->token); /* views may live on: the writer checks before reusing the slot */
	rc = C->commit(wr->w, n);
	if (writer_commit_rc(wr, rc))
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *slot_abort(SlotObject *s, PyObject *unused)
{
	WriterObject *wr = s->writer;
	int rc;

	if (!slot_open_check(s))
		return NULL;
	s->open = 0;
	wr->open = NULL;
	unbind_token(&s->token);
	rc = C->abort(wr->w);
	if (rc)
		return raise_rc(rc, wr->m, "abort failed on");
	Py_RETURN_NONE;
}

static PyObject *slot_enter(PyObject *self, PyObject *unused)
{
	Py_INCREF(self);
	return self;
}

static PyObject *slot_exit(SlotObject *s, PyObject *const *args, Py_ssize_t nargs)
{
	WriterObject *wr = s->writer;
	int rc;

	if (!s->open || wr->closed || !wr->w || wr->m->closed || wr->m->forked)
		Py_RETURN_NONE; /* committed or aborted in the block, or the writer closed under it */
	s->open = 0;
	wr->open = NULL;
	unbind_token(&s->token);
	if (nargs > 0 && args[0] != Py_None) { /* the block raised: readers never see the message */
		C->abort(wr->w);
		Py_RETURN_NONE;
	}
	rc = C->commit(wr->w, s->nbytes);
	if (writer_commit_rc(wr, rc))
		return NULL;
	Py_RETURN_NONE;
}

static void slot_dealloc(SlotObject *s)
{
	WriterObject *wr = s->writer;

	unbind_token(&s->token);
	if (s->open) { /* dropped without commit or abort: readers never see it */
		if (wr->w && !wr->m->forked && !exiting)
			C->abort(wr->w);
		if (wr->open == s)
			wr->open = NULL;
	}
	if (slot_nfree < FREELIST_MAX)
		slot_freelist[slot_nfree++] = s;
	else
		PyObject_Free(s);
	Py_DECREF(wr);
}

static PyObject *slot_get_nbytes(SlotObject *s, void *c)
{
	return PyLong_FromUnsignedLongLong(s->nbytes);
}

static PyObject *slot_get_index(SlotObject *s, void *c)
{
	return PyLong_FromUnsignedLong(s->index);
}

static PyObject *slot_get_seq(SlotObject *s, void *c)
{
	return PyLong_FromUnsignedLongLong(s->pos);
}

static PyObject *slot_get_open(SlotObject *s, void *c)
{
	return PyBool_FromLong(s->open);
}

static PyObject *slot_repr(SlotObject *s)
{
	return PyUnicode_FromFormat("<shmchan.Slot seq=%llu nbytes=%llu%s>", (unsigned long long)s->pos,
				    (unsigned long long)s->nbytes, s->open ? "" : " done");
}

static PyMethodDef slot_methods[] = {
	{"ndarray", FASTKW(slot_ndarray),
	 "ndarray(shape=None, dtype=numpy.uint8, *, offset=0) -> numpy.ndarray\n--\n\nA writable numpy array over "
	 "the slot, starting offset bytes in (shape None: 1-D over the rest of the message)."},
	{"commit", FASTKW(slot_commit),
	 "commit(nbytes=None)\n--\n\nPublish the message (optionally shortened to nbytes). Do not write through "
	 "this slot's views afterwards: the reader may be reading them."},
	{"abort", (PyCFunction)slot_abort, METH_NOARGS, "abort()\n--\n\nDrop the reservation; readers never see it."},
	{"__enter__", slot_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)(void (*)(void))slot_exit, METH_FASTCALL, NULL},
	{"__reduce__", no_pickle, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef slot_getset[] = {
	{"buffer", (getter)slot_get_buffer, NULL, "A writable memoryview of exactly nbytes bytes of the slot.", NULL},
	{"nbytes", (getter)slot_get_nbytes, NULL, "Length of the message being written.", NULL},
	{"index", (getter)slot_get_index, NULL, "Slot number in the ring.", NULL},
	{"seq", (getter)slot_get_seq, NULL, "The stream position this message gets when committed.", NULL},
	{"open", (getter)slot_get_open, NULL, "Whether the slot is still reserved (not committed or aborted).", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

/* ---------------------------------------------------------------------------------------------- */
/* Reader */

static int reader_usable(ReaderObject *self)
{
	if (self->closed || !self->r || self->m->closed || self->m->forked) {
		closed_error(self->m, "reader");
		return 0;
	}
	return 1;
}

static void reader_user_close(ReaderObject *self)
{
	self->closed = 1;
	if (!self->r)
		return;
	C->wake_head(self->m->ch); /* threads waiting for a message look again and find it closed */
	viewset_drop_all(&self->vs);
	if (self->vs.live > 0)
		return; /* views pin messages: the reader stays attached until the last of them dies */
	C->reader_close(self->r);
	self->r = NULL;
	if (self->m->reader == self)
		self->m->reader = NULL;
}

static void reader_maybe_finalize(ReaderObject *self)
{
	if (self->closed && self->vs.live == 0 && self->r) {
		C->reader_close(self->r);
		self->r = NULL;
		if (self->m->reader == self)
			self->m->reader = NULL;
		mapping_maybe_finalize(self->m);
	}
}

static PyObject *mapping_reader(MappingObject *m, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"start", "spin", "cls", "channel", NULL};
	unsigned int start = SHMCHAN_START_LATEST;
	PyObject *spin = Py_None, *cls = (PyObject *)&ReaderType, *channel = Py_None;
	ReaderObject *self;
	shmchan_reader *r;
	int64_t spin_ns;
	int rc;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|IOOO", kwlist, &start, &spin, &cls, &channel))
		return NULL;
	if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &ReaderType)) {
		PyErr_SetString(PyExc_TypeError, "cls must be a subclass of shmchan Reader");
		return NULL;
	}
	if (spin_to_ns(spin, &spin_ns)) /* every argument is checked before anything is attached */
		return NULL;
	if (start > SHMCHAN_START_OLDEST) {
		PyErr_SetString(PyExc_ValueError, "bad start");
		return NULL;
	}
	if (!mapping_usable(m))
		return NULL;
	if (m->reader) {
		PyErr_Format(ChannelBusyError, "channel %R already has a reader on this handle%s", m->where,
			     m->reader->closed ? " (a closed one whose message views are still alive)"
					       : (m->kind == SHMCHAN_KIND_BROADCAST ? "; open the channel again for "
										     "another reader"
										   : ""));
		return NULL;
	}
	self = (ReaderObject *)((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0);
	if (!self)
		return NULL;
	if (viewset_init(&self->vs, m->capacity, 1)) {
		Py_DECREF(self);
		return NULL;
	}
	self->batch_cap = 16;
	self->batch = PyMem_Calloc(self->batch_cap, sizeof(struct shmchan_msg));
	if (!self->batch) {
		Py_DECREF(self);
		return PyErr_NoMemory();
	}
	for (;;) {
		m->holders++; /* a broadcast join may wait (a little) for the writer's scan */
		Py_BEGIN_ALLOW_THREADS
		rc = C->reader_attach_ex(m->ch, start, &r);
		Py_END_ALLOW_THREADS
		m->holders--;
		/* a signal ended a join that waited for a stuck scan: run the handlers (Ctrl-C raises
		   KeyboardInterrupt), then join again */
		if (rc != -EINTR)
			break;
		if (PyErr_CheckSignals()) {
			Py_DECREF(self);
			return NULL;
		}
		if (!mapping_usable(m)) {
			Py_DECREF(self);
			return NULL;
		}
	}
	if (rc) {
		Py_DECREF(self);
		if (rc == -EBUSY) {
			PyErr_Format(ChannelBusyError, "cannot attach a reader to %R: another reader is attached", m->where);
			return NULL;
		}
		if (rc == -2008 /* SHMCHAN_ENOREADERS */) {
			struct shmchan_info info;
			memset(&info, 0, sizeof(info));
			C->info(m->ch, &info);
			PyErr_Format(ChannelBusyError, "cannot attach a reader to %R: all %u reader places are taken",
				     m->where, info.max_readers);
			return NULL;
		}
		if (rc == -ECANCELED)
			return closed_error(m, "channel");
		if (rc == -ETIMEDOUT) { /* a broadcast join gave up on a writer stuck in a scan */
			PyErr_Format(ChannelTimeoutError, "cannot attach a reader to %R: %s", m->where,
				     C->channel_diag(m->ch));
			return NULL;
		}
		return raise_rc(rc, m, "cannot attach a reader to");
	}
	Py_INCREF(m);
	self->m = m;
	self->r = r;
	Py_INCREF(channel);
	self->channel = channel;
	self->spin_ns = spin_ns == -2 ? SPIN_DEFAULT : spin_ns;
	if (spin_ns != -2)
		C->reader_set_spin(r, spin_ns);
	m->reader = self;
	return (PyObject *)self;
}

static int reader_traverse(ReaderObject *self, visitproc visit, void *arg)
{
	Py_VISIT(self->channel); /* (a heap subclass's subtype_traverse visits the type) */
	return viewset_traverse(&self->vs, visit, arg);
}

static int reader_clear(ReaderObject *self)
{
	Py_CLEAR(self->channel);
	viewset_clear(&self->vs);
	return 0;
}

static void reader_dealloc(ReaderObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);

	PyObject_GC_UnTrack(self);
	Py_CLEAR(self->channel);
	if (self->weakreflist)
		PyObject_ClearWeakRefs((PyObject *)self);
	if (self->r && !self->m->forked && !exiting)
		C->reader_close(self->r); /* no message is left (they hold this reader) */
	self->r = NULL;
	if (self->m && self->m->reader == self)
		self->m->reader = NULL;
	if (self->m)
		mapping_maybe_finalize(self->m);
	PyMem_Free(self->batch);
	frame_cache_free(self->frame_cache);
	self->frame_cache = NULL;
	viewset_free(&self->vs);
	Py_XDECREF(self->m);
	tp->tp_free((PyObject *)self); /* (a heap subclass's subtype_dealloc drops the type) */
}

static MessageObject *message_freelist[FREELIST_MAX];
static int message_nfree;

static MessageObject *message_new(ReaderObject *rd, const struct shmchan_msg *m)
{
	MessageObject *msg;

	if (message_nfree) {
		msg = message_freelist[--message_nfree];
		(void)PyObject_Init((PyObject *)msg, &MessageType);
	} else {
		msg = PyObject_New(MessageObject, &MessageType);
		if (!msg)
			return NULL;
	}
	Py_INCREF(rd);
	msg->reader = rd;
	msg->data = (char *)m->data;
	msg->pos = m->pos;
	msg->len = m->len;
	msg->slot = m->slot;
	msg->lost = m->lost;
	msg->state = MSG_HELD;
	msg->from_iter = 0;
	msg->token = NULL;
	msg->taker = thread_number();
	held_add(rd, msg->taker, 1);
	return msg;
}

static PyObject *reader_error(ReaderObject *self, int rc)
{
	MappingObject *m = self->m;

	if (rc == -ECANCELED || !reader_usable(self)) {
		PyErr_Clear();
		return closed_error(m, "reader");
	}
	switch (rc) {
	case -EAGAIN:
		PyErr_Format(ChannelEmptyError, "channel %R is empty", m->where);
		return NULL;
	case -ETIMEDOUT:
		PyErr_Format(ChannelTimeoutError, "no message on channel %R for the whole timeout", m->where);
		return NULL;
	case -2007: /* SHMCHAN_EPINNED */
		PyErr_Format(PyExc_BufferError,
			     "all %u slots of %R hold messages this reader has not released, or whose views (memoryviews, "
			     "numpy arrays) are still alive: release messages and delete views (or copy them) so the "
			     "writer can go on",
			     m->capacity, m->where);
		return NULL;
	case -2004: /* SHMCHAN_EPEERDEAD */
		return peer_dead(m, 1);
	case -2006: /* SHMCHAN_EENDED */
		PyErr_Format(ChannelEndedError, "the writer of channel %R closed and every message was received",
			     m->where);
		return NULL;
	default:
		return raise_rc(rc, m, "cannot read from");
	}
}

static int reader_grow_batch(ReaderObject *self, uint32_t max)
{
	struct shmchan_msg *b;

	if (max <= self->batch_cap)
		return 0;
	b = PyMem_Realloc(self->batch, max * sizeof(struct shmchan_msg));
	if (!b) {
		PyErr_NoMemory();
		return -1;
	}
	self->batch = b;
	self->batch_cap = max;
	return 0;
}

/*
 * Takes up to max messages into self->batch: at once if any is there, else waiting up to tns
 * (-1: for ever) without holding the reader. Returns how many (>= 1), or -1 with an exception.
 */
#define PINNED_BY_OTHERS (-2)

/* An error of a take: raised, except when every slot is held and other threads of this process
   hold some of those messages (they will release them): then the caller waits. */
static Py_ssize_t take_failed(ReaderObject *self, int rc, int64_t tns)
{
	if (rc == -2007 /* SHMCHAN_EPINNED */ && tns != 0 && held_by_others(self))
		return PINNED_BY_OTHERS;
	reader_error(self, rc);
	return -1;
}

/* One attempt of reader_take (see there); PINNED_BY_OTHERS when it must wait for other threads. */
static Py_ssize_t reader_take_once(ReaderObject *self, uint32_t max, int64_t tns, int64_t *deadlinep)
{
	int64_t deadline;
	struct shmchan_msg *b = self->batch;
	uint32_t have = 0;
	int rc;

	if (self->stashed) {
		b[0] = self->stash;
		self->stashed = 0;
		have = 1;
		if (max == 1)
			return 1;
	}
	rc = C->try_peek_batch(self->r, b + have, max - have);
	if (rc > 0)
		return have + (uint32_t)rc;
	if (have)
		return have; /* the stashed one, and nothing more yet (or an error the next call sees) */
	if (rc != -EAGAIN)
		return take_failed(self, rc, tns);
	if (tns == 0) {
		/* not waiting: a real non-blocking peek says why (ended, writer dead, empty) */
		rc = C->peek_batch(self->r, b, max, 0);
		return rc > 0 ? rc : take_failed(self, rc, tns);
	}
	if (*deadlinep == -2) /* the clock is read only when a wait begins */
		*deadlinep = deadline_of(tns);
	deadline = *deadlinep;
	C->reader_count_empty(self->r);
	if (self->spin_ns > 0) {
		/* with the GIL held no thread of ours can close the channel meanwhile */
		int64_t first = self->spin_ns < GIL_SPIN_NS ? self->spin_ns : GIL_SPIN_NS;
		if (tns > 0 && tns < first)
			first = tns;
		if (C->wait_head_spin(self->m->ch, C->reader_position(self->r), first, first) == 0) {
			rc = C->try_peek_batch(self->r, b, max);
			if (rc > 0)
				return rc;
			if (rc != -EAGAIN)
				return take_failed(self, rc, tns);
		}
	}
	for (;;) {
		int64_t slice = slice_left(deadline);
		uint64_t pos;
		MappingObject *m = self->m;

		if (slice == 0) {
			reader_error(self, -ETIMEDOUT);
			return -1;
		}
		pos = C->reader_position(self->r);
		m->holders++;
		Py_BEGIN_ALLOW_THREADS
		rc = C->wait_head_spin(m->ch, pos, self->spin_ns, slice);
		Py_END_ALLOW_THREADS
		m->holders--;
		if (!reader_usable(self)) {
			mapping_maybe_finalize(m);
			return -1;
		}
		rc = C->try_peek_batch(self->r, b, max);
		if (rc > 0)
			return rc;
		if (rc != -EAGAIN)
			return take_failed(self, rc, tns);
		/* nothing yet: the writer closed or died, a slice passed, or a signal came: look (a system call) */
		C->reader_continue_wait(self->r);
		rc = C->peek_batch(self->r, b, max, 0);
		if (rc > 0)
			return rc;
		if (rc != -EAGAIN)
			return take_failed(self, rc, tns);
		if (PyErr_CheckSignals())
			return -1;
	}
}

/* Every slot is held and other threads hold some: wait (GIL released) until one is handed back.
   0 to look again, -1 with an exception (closed, signal, timeout). */
static int reader_wait_released(ReaderObject *self, int64_t deadline)
{
	int64_t pause = 20000;
	uint64_t held = C->reader_outstanding(self->r);

	while (C->reader_outstanding(self->r) >= held) {
		struct timespec ts = {0, (long)pause};
		MappingObject *m = self->m;

		if (deadline >= 0 && now_ns() >= deadline) {
			reader_error(self, -ETIMEDOUT);
			return -1;
		}
		m->holders++;
		Py_BEGIN_ALLOW_THREADS
		nanosleep(&ts, NULL); /* the other threads release with the GIL, which we let go here */
		Py_END_ALLOW_THREADS
		m->holders--;
		if (!reader_usable(self)) {
			mapping_maybe_finalize(m);
			return -1;
		}
		if (PyErr_CheckSignals())
			return -1;
		if (!held_by_others(self))
			return 0; /* they released theirs: look again (and raise if the ring is still ours) */
		if (pause < 1000000)
			pause *= 2;
	}
	return 0;
}

/*
 * Takes up to max messages into self->batch: at once if any is there, else waiting up to tns
 * (-1: for ever) without holding the reader. Returns how many (>= 1), or -1 with an exception.
 */
static Py_ssize_t reader_take(ReaderObject *self, uint32_t max, int64_t tns)
{
	int64_t deadline = -2; /* not looked up yet */
	Py_ssize_t n;

	while ((n = reader_take_once(self, max, tns, &deadline)) == PINNED_BY_OTHERS) {
		if (deadline == -2)
			deadline = deadline_of(tns);
		if (reader_wait_released(self, deadline))
			return -1;
	}
	return n;
}

/* Hands a message back (now, or when its last view dies); the core's answer, 0 or -ESTALE, ... */
static int message_do_release(MessageObject *msg)
{
	ReaderObject *rd = msg->reader;
	TokenObject *viewed = release_token(&msg->token);

	msg->state = MSG_DONE;
	held_add(rd, msg->taker, -1);
	if (!rd->r || rd->m->forked)
		return 0;
	if (viewed) {
		viewed->pending = 1; /* a view is alive: the slot goes back when the last one dies */
		viewed->pos = msg->pos;
		return C->check(rd->r, msg->pos);
	}
	return C->release(rd->r, msg->pos);
}

/* A token of this reader died: if its message was released meanwhile, hand the slot back now. */
static void reader_view_died(ReaderObject *rd, TokenObject *t)
{
	if (t->pending && rd->r && !rd->m->forked)
		(void)C->release(rd->r, t->pos); /* -ESTALE was reported at release() already */
	reader_maybe_finalize(rd);
}

static PyObject *lapped(MessageObject *msg)
{
	PyErr_Format(LappedError,
		     "message %llu of %R was overwritten while it was held (the writer lapped this reader): what was "
		     "read from it may be torn",
		     (unsigned long long)msg->pos, msg->reader->m->where);
	return NULL;
}

static int message_release_rc(MessageObject *msg, int rc)
{
	if (rc == 0)
		return 0;
	if (rc == -ESTALE)
		lapped(msg);
	else
		raise_rc(rc, msg->reader->m, "cannot release a message of");
	return -1;
}

/* Releases the message iteration handed out before, unless the loop body did. */
static void reader_release_last(ReaderObject *self)
{
	MessageObject *last = self->last;

	self->last = NULL;
	if (last && last->state == MSG_HELD) {
		/* a lapped message was already counted lost; its reader learns of it through msg.lost,
		   msg.intact and Reader.lost, not by an error that would end the loop */
		(void)message_do_release(last);
	}
}

static PyObject *reader_recv(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"timeout"};
	PyObject *a[1];
	int64_t tns;

	if (nargs == 0 && !kwnames) {
		tns = -1;
	} else {
		if (parse_args("recv", args, nargs, kwnames, names, 1, 1, a) || seconds_to_ns(a[0], "timeout", &tns))
			return NULL;
	}
	if (!reader_usable(self))
		return NULL;
	if (reader_take(self, 1, tns) < 0)
		return NULL;
	return (PyObject *)message_new(self, &self->batch[0]);
}

static PyObject *reader_poll(ReaderObject *self, PyObject *unused)
{
	int rc;

	if (!reader_usable(self))
		return NULL;
	if (self->stashed) {
		self->stashed = 0;
		return (PyObject *)message_new(self, &self->stash);
	}
	rc = C->try_peek_batch(self->r, self->batch, 1);
	if (rc == -EAGAIN)
		Py_RETURN_NONE;
	if (rc < 0)
		return reader_error(self, rc);
	return (PyObject *)message_new(self, &self->batch[0]);
}

static PyObject *reader_recv_batch(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"max_messages", "timeout"};
	PyObject *a[2], *list;
	uint64_t max = 64;
	int64_t tns;
	Py_ssize_t n, i;

	if (parse_args("recv_batch", args, nargs, kwnames, names, 2, 2, a))
		return NULL;
	if (a[0] && size_arg(a[0], "max_messages", UINT32_MAX, &max))
		return NULL;
	if (seconds_to_ns(a[1], "timeout", &tns))
		return NULL;
	if (max < 1 || max > self->m->capacity) {
		PyErr_Format(PyExc_ValueError, "max_messages must be between 1 and the capacity (%u)", self->m->capacity);
		return NULL;
	}
	if (!reader_usable(self))
		return NULL;
	if (reader_grow_batch(self, (uint32_t)max))
		return NULL;
	n = reader_take(self, (uint32_t)max, tns);
	if (n < 0)
		return NULL;
	list = PyList_New(n);
	if (!list)
		goto fail;
	for (i = 0; i < n; i++) {
		MessageObject *msg = message_new(self, &self->batch[i]);
		if (!msg) {
			Py_DECREF(list);
			goto fail;
		}
		PyList_SET_ITEM(list, i, (PyObject *)msg);
	}
	return list;
fail:
	/* messages taken but never handed out: give them back so nothing is lost */
	for (i = 0; i < n; i++)
		(void)C->release(self->r, self->batch[i].pos);
	return NULL;
}

/* Take one message and copy it out. For recv_bytes (dst NULL: a new bytes) and recv_into. */
static PyObject *reader_copy(ReaderObject *self, int64_t tns, Py_buffer *dst, uint64_t *outlen)
{
	for (;;) {
		struct shmchan_msg m;
		PyObject *bytes = NULL;
		char *to;
		int rc;

		if (reader_take(self, 1, tns) < 0)
			return NULL;
		m = self->batch[0];
		if (dst) {
			if (m.len > (uint64_t)dst->len) {
				self->stash = m; /* it stays first in line for this reader */
				self->stashed = 1;
				PyErr_Format(PyExc_ValueError, "the next message has %llu bytes; the buffer holds %zd",
					     (unsigned long long)m.len, dst->len);
				return NULL;
			}
			to = dst->buf;
		} else {
			bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)m.len);
			if (!bytes) {
				self->stash = m;
				self->stashed = 1;
				return NULL;
			}
			to = PyBytes_AS_STRING(bytes);
		}
		if (m.len >= BIG_COPY) {
			MappingObject *mp = self->m;
			mp->holders++;
			Py_BEGIN_ALLOW_THREADS
			memcpy(to, m.data, (size_t)m.len);
			Py_END_ALLOW_THREADS
			mp->holders--;
			if (!reader_usable(self)) {
				Py_XDECREF(bytes);
				mapping_maybe_finalize(mp);
				return NULL;
			}
		} else if (m.len) {
			memcpy(to, m.data, (size_t)m.len);
		}
		rc = C->release(self->r, m.pos);
		if (rc == -ESTALE) { /* overwritten during the copy: counted lost; take the next */
			Py_XDECREF(bytes);
			continue;
		}
		if (rc) {
			Py_XDECREF(bytes);
			return raise_rc(rc, self->m, "cannot read from");
		}
		*outlen = m.len;
		if (bytes)
			return bytes;
		Py_RETURN_NONE;
	}
}

static PyObject *reader_recv_bytes(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"timeout"};
	PyObject *a[1];
	int64_t tns;
	uint64_t len;

	if (parse_args("recv_bytes", args, nargs, kwnames, names, 1, 1, a) || seconds_to_ns(a[0], "timeout", &tns))
		return NULL;
	if (!reader_usable(self))
		return NULL;
	return reader_copy(self, tns, NULL, &len);
}

static PyObject *reader_recv_into(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"buffer", "timeout"};
	PyObject *a[2], *res;
	int64_t tns;
	uint64_t len = 0;
	Py_buffer b;

	if (parse_args("recv_into", args, nargs, kwnames, names, 2, 2, a))
		return NULL;
	if (!a[0]) {
		PyErr_SetString(PyExc_TypeError, "recv_into() needs a writable buffer");
		return NULL;
	}
	if (seconds_to_ns(a[1], "timeout", &tns))
		return NULL;
	if (PyObject_GetBuffer(a[0], &b, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
		return NULL;
	if (!reader_usable(self)) {
		PyBuffer_Release(&b);
		return NULL;
	}
	res = reader_copy(self, tns, &b, &len);
	PyBuffer_Release(&b);
	if (!res)
		return NULL;
	Py_DECREF(res);
	return PyLong_FromUnsignedLongLong(len);
}

static PyObject *reader_iter(PyObject *self)
{
	Py_INCREF(self);
	return self;
}

static PyObject *reader_iternext(ReaderObject *self)
{
	MessageObject *msg;

	reader_release_last(self);
	if (!reader_usable(self))
		return NULL;
	if (reader_take(self, 1, -1) < 0) {
		if (PyErr_ExceptionMatches(ChannelEndedError))
			PyErr_Clear(); /* StopIteration */
		return NULL;
	}
	msg = message_new(self, &self->batch[0]);
	if (msg) {
		msg->from_iter = 1;
		self->last = msg;
	}
	return (PyObject *)msg;
}

static PyObject *reader_close_method(ReaderObject *self, PyObject *unused)
{
	if (!self->closed && !self->m->forked) {
		reader_release_last(self);
		reader_user_close(self);
		mapping_maybe_finalize(self->m);
	}
	self->closed = 1;
	Py_RETURN_NONE;
}

static PyObject *reader_get_closed(ReaderObject *self, void *c)
{
	return PyBool_FromLong(self->closed || !self->r || self->m->closed || self->m->forked);
}

static PyObject *reader_get_outstanding(ReaderObject *self, void *c)
{
	if (!reader_usable(self))
		return NULL;
	/* a stashed message (recv_into found the buffer short) is still first in line, not received */
	return PyLong_FromUnsignedLongLong(C->reader_outstanding(self->r) - (uint64_t)self->stashed);
}

static PyObject *reader_get_position(ReaderObject *self, void *c)
{
	if (!reader_usable(self))
		return NULL;
	if (self->stashed)
		return PyLong_FromUnsignedLongLong(self->stash.pos);
	return PyLong_FromUnsignedLongLong(C->reader_position(self->r));
}

static PyObject *reader_get_lost(ReaderObject *self, void *c)
{
	if (!reader_usable(self))
		return NULL;
	return PyLong_FromUnsignedLongLong(C->reader_lost(self->r));
}

static PyObject *reader_get_mapping(ReaderObject *self, void *c)
{
	Py_INCREF(self->m);
	return (PyObject *)self->m;
}

static PyObject *reader_get_channel(ReaderObject *self, void *c)
{
	PyObject *ch = self->channel ? self->channel : Py_None;
	Py_INCREF(ch);
	return ch;
}

static PyObject *reader_exit(ReaderObject *self, PyObject *args)
{
	return reader_close_method(self, NULL);
}

static PyObject *reader_repr(ReaderObject *self)
{
	return PyUnicode_FromFormat("<shmchan.Reader of %R%s>", self->m->where,
				    (self->closed || !self->r || self->m->closed) ? " closed" : "");
}

static PyMethodDef reader_methods[] = {
	{"recv", FASTKW(reader_recv),
	 "recv(timeout=None) -> Message\n--\n\nTake the next message, in place. Waits while the ring is empty: "
	 "timeout None for ever, 0 not at all (ChannelEmptyError), else up to that many seconds "
	 "(ChannelTimeoutError). Raises ChannelEndedError when the writer closed and everything was received, "
	 "PeerDeadError when the writer died."},
	{"recv_bytes", FASTKW(reader_recv_bytes),
	 "recv_bytes(timeout=None) -> bytes\n--\n\nTake the next message as a bytes copy (and release it). Waits "
	 "like recv(). On an overwrite broadcast a copy the writer tore is never returned: it counts as lost "
	 "and the next message is taken."},
	{"recv_into", FASTKW(reader_recv_into),
	 "recv_into(buffer, timeout=None) -> int\n--\n\nCopy the next message into a writable buffer (and "
	 "release it); return its length. A message larger than the buffer raises ValueError and stays first in "
	 "line."},
	{"recv_batch", FASTKW(reader_recv_batch),
	 "recv_batch(max_messages=64, timeout=None) -> list[Message]\n--\n\nTake every available message, up to "
	 "max_messages; waits (like recv()) only for the first. One call however many messages come back."},
	{"_poll", (PyCFunction)reader_poll, METH_NOARGS, "The next message if one is there, else None (no wait)."},
	{"close", (PyCFunction)reader_close_method, METH_NOARGS,
	 "close()\n--\n\nDetach. Messages received but not released are delivered again to the next reader. "
	 "Idempotent. While views of its messages are alive, the reader stays attached (holding those "
	 "messages) until the last of them dies."},
	{"__enter__", writer_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)reader_exit, METH_VARARGS, NULL},
	{"__reduce__", no_pickle, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef reader_getset[] = {
	{"closed", (getter)reader_get_closed, NULL, "Whether this reader (or its channel) was closed.", NULL},
	{"outstanding", (getter)reader_get_outstanding, NULL,
	 "Messages received and not yet handed back to the writer (including those views pin).", NULL},
	{"position", (getter)reader_get_position, NULL,
	 "The stream position of the next message recv() takes (before any skip over messages the writer "
	 "already overwrote).",
	 NULL},
	{"lost", (getter)reader_get_lost, NULL,
	 "Messages this reader lost since it attached because the writer lapped it (overwrite broadcasts).", NULL},
	{"channel", (getter)reader_get_channel, NULL, "The channel this reader was attached through.", NULL},
	{"_mapping", (getter)reader_get_mapping, NULL, NULL, NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

/* ---------------------------------------------------------------------------------------------- */
/* Message */

static int message_live(MessageObject *msg)
{
	if (msg->state != MSG_HELD) {
		PyErr_SetString(MessageReleasedError, "the message was released");
		return 0;
	}
	if (!msg->reader->r || msg->reader->m->forked) {
		closed_error(msg->reader->m, "reader");
		return 0;
	}
	return 1;
}

static TokenObject *message_token(PyObject *o)
{
	MessageObject *msg = (MessageObject *)o;
	ReaderObject *rd = msg->reader;

	return acquire_token((PyObject *)rd, &rd->vs, &msg->token, msg->data, msg->len, msg->pos, msg->slot);
}

static PyObject *message_get_buffer(MessageObject *msg, void *c)
{
	ReaderObject *rd = msg->reader;

	if (!message_live(msg))
		return NULL;
	return acquire_view((PyObject *)rd, &rd->vs, &msg->token, msg->data, msg->len, msg->pos, msg->slot);
}

static PyObject *message_ndarray(MessageObject *msg, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = {"shape", "dtype", "offset"};
	PyObject *a[3];

	if (parse_args("ndarray", args, nargs, kwnames, names, 2, 3, a))
		return NULL;
	if (!message_live(msg))
		return NULL;
	return make_ndarray(msg->data, msg->len, 1, a[0], a[1], a[2], message_token, (PyObject *)msg);
}

static PyObject *message_tobytes(MessageObject *msg, PyObject *unused)
{
	if (!message_live(msg))
		return NULL;
	return PyBytes_FromStringAndSize(msg->data, (Py_ssize_t)msg->len);
}

static PyObject *message_release(MessageObject *msg, PyObject *unused)
{
	if (msg->state != MSG_HELD)
		Py_RETURN_NONE;
	if (message_release_rc(msg, message_do_release(msg)))
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *message_get_intact(MessageObject *msg, void *c)
{
	int rc;

	if (!message_live(msg))
		return NULL;
	rc = C->check(msg->reader->r, msg->pos);
	if (rc && rc != -ESTALE)
		return raise_rc(rc, msg->reader->m, "cannot check a message of");
	return PyBool_FromLong(rc == 0);
}

static PyObject *message_check(MessageObject *msg, PyObject *unused)
{
	PyObject *ok = message_get_intact(msg, NULL);

	if (!ok)
		return NULL;
	if (ok == Py_False) {
		Py_DECREF(ok);
		return lapped(msg);
	}
	Py_DECREF(ok);
	Py_RETURN_NONE;
}

static PyObject *message_exit(MessageObject *msg, PyObject *const *args, Py_ssize_t nargs)
{
	int rc;

	if (msg->state != MSG_HELD)
		Py_RETURN_NONE;
	rc = message_do_release(msg);
	if (rc == -ESTALE && nargs > 0 && args[0] != Py_None)
		Py_RETURN_NONE; /* do not hide the exception already on its way */
	if (message_release_rc(msg, rc))
		return NULL;
	Py_RETURN_NONE;
}

static void message_dealloc(MessageObject *msg)
{
	ReaderObject *rd = msg->reader;

	if (msg->state == MSG_HELD && !exiting) { /* dropped unreleased: released now */
		(void)message_do_release(msg);
	} else {
		if (msg->state == MSG_HELD)
			held_add(rd, msg->taker, -1);
		if (msg->token)
			msg->token->holder = NULL;
	}
	if (rd->last == msg)
		rd->last = NULL;
	if (message_nfree < FREELIST_MAX)
		message_freelist[message_nfree++] = msg;
	else
		PyObject_Free(msg);
	Py_DECREF(rd);
}

static PyObject *message_get_nbytes(MessageObject *msg, void *c)
{
	return PyLong_FromUnsignedLongLong(msg->len);
}

static PyObject *message_get_seq(MessageObject *msg, void *c)
{
	return PyLong_FromUnsignedLongLong(msg->pos);
}

static PyObject *message_get_lost(MessageObject *msg, void *c)
{
	return PyLong_FromUnsignedLong(msg->lost);
}

static PyObject *message_get_released(MessageObject *msg, void *c)
{
	return PyBool_FromLong(msg->state != MSG_HELD);
}

static PyObject *message_get_slot(MessageObject *msg, void *c)
{
	return PyLong_FromUnsignedLong(msg->slot);
}

static Py_ssize_t message_length(MessageObject *msg)
{
	return (Py_ssize_t)msg->len;
}

static PyObject *message_repr(MessageObject *msg)
{
	char lost[40] = "";

	if (msg->lost)
		snprintf(lost, sizeof(lost), " lost=%u", msg->lost);
	return PyUnicode_FromFormat("<shmchan.Message seq=%llu nbytes=%llu%s%s>", (unsigned long long)msg->pos,
				    (unsigned long long)msg->len, lost, msg->state != MSG_HELD ? " released" : "");
}

static PyMethodDef message_methods[] = {
	{"ndarray", FASTKW(message_ndarray),
	 "ndarray(shape=None, dtype=numpy.uint8, *, offset=0) -> numpy.ndarray\n--\n\nA read-only numpy array over "
	 "the message, starting offset bytes in (shape None: 1-D over the rest)."},
	{"tobytes", (PyCFunction)message_tobytes, METH_NOARGS, "tobytes() -> bytes\n--\n\nA copy of the message."},
	{"release", (PyCFunction)message_release, METH_NOARGS,
	 "release()\n--\n\nGive the slot back to the writer (once no view of it is alive). Idempotent. On a "
	 "broadcast channel with the overwrite policy, raises LappedError (after releasing) if the writer "
	 "rewrote the slot while the message was held."},
	{"check", (PyCFunction)message_check, METH_NOARGS,
	 "check()\n--\n\nRaise LappedError if the writer has rewritten this message's slot (see intact)."},
	{"frame", FASTKW(message_frame),
	 "frame() -> FrameView\n--\n\nDecode a Frame message in place: header fields and read-only pixel arrays "
	 "of the slot."},
	{"tensor", FASTKW(message_tensor),
	 "tensor() -> numpy.ndarray\n--\n\nDecode a Tensor message in place: a read-only array of the slot."},
	{"__enter__", writer_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)(void (*)(void))message_exit, METH_FASTCALL, NULL},
	{"__reduce__", no_pickle, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef message_getset[] = {
	{"buffer", (getter)message_get_buffer, NULL, "A read-only memoryview of the message, in place.", NULL},
	{"nbytes", (getter)message_get_nbytes, NULL, "Length of the message in bytes.", NULL},
	{"seq", (getter)message_get_seq, NULL,
	 "Position of the message in the stream (0, 1, 2, ... since the channel was created).", NULL},
	{"lost", (getter)message_get_lost, NULL,
	 "Overwrite broadcasts: messages this reader lost just before this one because the writer lapped it "
	 "(0 otherwise; saturates at 2**32 - 1).",
	 NULL},
	{"released", (getter)message_get_released, NULL, "Whether release() was called.", NULL},
	{"slot", (getter)message_get_slot, NULL, "Slot number in the ring.", NULL},
	{"intact", (getter)message_get_intact, NULL,
	 "Whether the slot still holds this message: always, except on an overwrite broadcast whose writer "
	 "lapped the reader while the message was held (then what was read may be torn). Check it after reading.",
	 NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods message_as_sequence = {.sq_length = (lenfunc)message_length};

/* ---------------------------------------------------------------------------------------------- */
/*
 * Frame messages: the per-message work of shmchan.schema.frame. Python builds, checks and caches
 * (a header template per geometry on the writer's side; the full parse of a header on the
 * reader's); these types and the two fast paths below only repeat what Python checked once:
 *
 * - Writer.reserve_frame: when the arguments match a template Python gave this writer
 *   (_frame_writer_cache), reserve, copy the template in and stamp seq, timestamp_ns and (when the
 *   template has them) pts and duration; anything else goes to Python.
 * - Message.frame: the reader keeps the last header Python parsed and validated
 *   (_frame_reader_cache). A message's header bytes are copied out of the slot once; when they equal
 *   the validated copy but for the per-message fields, those are read from the private copy and the
 *   cached geometry is used (after checking that it ends within this message); anything else goes
 *   to the full parse in Python.
 */

#define FRAME_MAX_HEADER 4096  /* as shmchan.schema._table.MAX_HEADER */
#define FRAME_NOPTS INT64_MIN
enum { FV_SEQ, FV_TS, FV_PTS, FV_DUR }; /* the per-message fields */

/* How the pixel array lies over a message: built once per geometry by Python. */
typedef struct {
	PyObject_HEAD
	PyArray_Descr *descr;
	int nd;
	npy_intp dims[NPY_MAXDIMS], strides[NPY_MAXDIMS];
	uint64_t offset, span; /* its first byte; bytes from there to past its last element */
} PixelSpecObject;

/* The C part of shmchan.schema.FrameView: the per-message fields and the views. */
typedef struct {
	PyObject_HEAD
	uint64_t seq, ts;
	int64_t pts, dur;
	PyObject *values;   /* the decoded header (its per-message entries may be another message's) */
	PyObject *geometry; /* shmchan.schema.frame._Geometry */
	PyObject *view;     /* a SlotView token or a memoryview: pins the slot; None once released */
	PyObject *pixels, *planes;
	PixelSpecObject *spec;
} FrameBaseObject;

/* The C part of shmchan.schema.FrameSlot. */
typedef struct {
	PyObject_HEAD
	SlotObject *slot;
	FrameBaseObject *frame; /* NULL once committed or aborted */
} FrameSlotObject;

/* One writer-side header template and the reserve_frame arguments it answers. */
typedef struct {
	PyObject_HEAD
	PyObject *width, *height, *fmt; /* as the Python call that built it got them */
	PyObject *header;               /* bytes: the header, zero-padded up to the pixels */
	uint64_t size;                  /* the whole message */
	Py_ssize_t off[4];              /* byte offsets of seq, timestamp_ns, pts, duration; -1: absent */
	int keyframe;
	PyObject *values, *geometry;
	PixelSpecObject *spec;
} FrameTemplateObject;

/* A reader's last validated Frame header. */
struct frame_cache {
	uint8_t *hdr;        /* private copy of [0, extent) of the header Python checked */
	Py_ssize_t extent;   /* bytes the full parse looked at */
	Py_ssize_t vol;      /* where the run of per-message fields starts */
	int nvol;            /* 8-byte fields in that run */
	int kinds[4];        /* FV_* of each */
	uint64_t base[4];    /* values of the per-message fields the header lacks (their defaults) */
	uint64_t end;        /* end of the pixel data: a message shorter than this is refused */
	PyObject *values, *geometry;
	PixelSpecObject *spec;
};

static PyTypeObject PixelSpecType, FrameBaseType, FrameSlotBaseType, FrameTemplateType;
static PyTypeObject *frame_view_type, *frame_slot_type; /* the Python subclasses */
static PyObject *frame_default_fmt;                      /* reserve_frame's default pixel_format */

static void put_le64(char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (char)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void frame_cache_free(struct frame_cache *fc)
{
	if (!fc)
		return;
	PyMem_Free(fc->hdr);
	Py_XDECREF(fc->values);
	Py_XDECREF(fc->geometry);
	Py_XDECREF(fc->spec);
	PyMem_Free(fc);
}

/* ---- PixelSpec ---- */

static PyObject *pixelspec_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	PyObject *shape, *strides, *offset_o, *dtype, *sh = NULL, *st = NULL;
	PixelSpecObject *sp = NULL;
	uint64_t offset, span, elsize;
	Py_ssize_t nd;

	if (kwds && PyDict_GET_SIZE(kwds)) {
		PyErr_SetString(PyExc_TypeError, "PixelSpec() takes no keyword arguments");
		return NULL;
	}
	if (!PyArg_ParseTuple(args, "OOOO:PixelSpec", &shape, &strides, &offset_o, &dtype))
		return NULL;
	if (size_arg(offset_o, "offset", UINT64_MAX, &offset))
		return NULL;
	sh = PySequence_Fast(shape, "shape must be a sequence of ints");
	st = sh ? PySequence_Fast(strides, "strides must be a sequence of ints") : NULL;
	if (!st)
		goto fail;
	nd = PySequence_Fast_GET_SIZE(sh);
	if (nd < 1 || nd > NPY_MAXDIMS || PySequence_Fast_GET_SIZE(st) != nd) {
		PyErr_Format(PyExc_ValueError, "a pixel array of %zd dimensions with %zd strides", nd,
			     PySequence_Fast_GET_SIZE(st));
		goto fail;
	}
	sp = (PixelSpecObject *)type->tp_alloc(type, 0);
	if (!sp)
		goto fail;
	sp->descr = descr_of(dtype);
	if (!sp->descr)
		goto fail;
	elsize = (uint64_t)PyDataType_ELSIZE(sp->descr);
	span = elsize;
	sp->nd = (int)nd;
	for (Py_ssize_t i = 0; i < nd; i++) {
		uint64_t n, s, part;
		if (size_arg(PySequence_Fast_GET_ITEM(sh, i), "shape", (uint64_t)NPY_MAX_INTP, &n) ||
		    size_arg(PySequence_Fast_GET_ITEM(st, i), "strides", (uint64_t)NPY_MAX_INTP, &s))
			goto fail;
		if (n == 0) {
			PyErr_SetString(PyExc_ValueError, "a pixel array has no empty dimension");
			goto fail;
		}
		if (__builtin_mul_overflow(n - 1, s, &part) || __builtin_add_overflow(span, part, &span)) {
			PyErr_SetString(PyExc_OverflowError, "pixel array too large");
			goto fail;
		}
		sp->dims[i] = (npy_intp)n;
		sp->strides[i] = (npy_intp)s;
	}
	sp->offset = offset;
	sp->span = span;
	Py_DECREF(sh);
	Py_DECREF(st);
	return (PyObject *)sp;
fail:
	Py_XDECREF(sh);
	Py_XDECREF(st);
	Py_XDECREF(sp);
	return NULL;
}

static void pixelspec_dealloc(PixelSpecObject *sp)
{
	Py_XDECREF(sp->descr);
	Py_TYPE(sp)->tp_free((PyObject *)sp);
}

/* ---- FrameBase ---- */

/* The pixel array over the frame's view (read-only when the view is), based on the view. */
static PyObject *frame_make_pixels(FrameBaseObject *f)
{
	PixelSpecObject *sp = f->spec;
	PyObject *arr, *base, *view = f->view;
	char *data;
	uint64_t len;
	int readonly;

	if (!view || view == Py_None) {
		PyErr_SetString(MessageReleasedError, "the views of this frame were released");
		return NULL;
	}
	if (Py_TYPE(view) == &TokenType) { /* the fast paths' views: the slot's token itself */
		TokenObject *t = (TokenObject *)view;
		data = t->data;
		len = (uint64_t)t->len;
		readonly = t->readonly;
		base = Py_NewRef(view);
	} else { /* a memoryview (or any buffer): the array holds an export of it, as numpy's would */
		Py_buffer *b;
		base = PyMemoryView_FromObject(view);
		if (!base)
			return NULL;
		b = PyMemoryView_GET_BUFFER(base);
		if (!PyBuffer_IsContiguous(b, 'C')) {
			Py_DECREF(base);
			PyErr_SetString(PyExc_TypeError, "a frame's view must be contiguous");
			return NULL;
		}
		data = b->buf;
		len = (uint64_t)b->len;
		readonly = b->readonly;
	}
	if (sp->offset > len || sp->span > len - sp->offset) {
		PyErr_Format(PyExc_ValueError, "pixels [%llu, +%llu) outside a message of %llu bytes",
			     (unsigned long long)sp->offset, (unsigned long long)sp->span, (unsigned long long)len);
		Py_DECREF(base);
		return NULL;
	}
	Py_INCREF(sp->descr);
	arr = PyArray_NewFromDescr(&PyArray_Type, sp->descr, sp->nd, sp->dims, sp->strides, data + sp->offset,
				   readonly ? 0 : NPY_ARRAY_WRITEABLE, NULL);
	if (!arr) {
		Py_DECREF(base);
		return NULL;
	}
	PyArray_UpdateFlags((PyArrayObject *)arr, NPY_ARRAY_UPDATE_ALL);
	if (PyArray_SetBaseObject((PyArrayObject *)arr, base) < 0) { /* steals base */
		Py_DECREF(arr);
		return NULL;
	}
	return arr;
}

static PyObject *frame_get_pixels(FrameBaseObject *f, void *c)
{
	if (!f->pixels) {
		f->pixels = frame_make_pixels(f);
		if (!f->pixels)
			return NULL;
	}
	Py_INCREF(f->pixels);
	return f->pixels;
}

static void frame_release_views(FrameBaseObject *f)
{
	Py_CLEAR(f->pixels);
	Py_CLEAR(f->planes);
	Py_XSETREF(f->view, Py_NewRef(Py_None));
}

static PyObject *frame_release_views_method(FrameBaseObject *f, PyObject *unused)
{
	frame_release_views(f);
	Py_RETURN_NONE;
}

static PyObject *frame_get_seq(FrameBaseObject *f, void *c)
{
	return PyLong_FromUnsignedLongLong(f->seq);
}

static PyObject *frame_get_ts(FrameBaseObject *f, void *c)
{
	return PyLong_FromUnsignedLongLong(f->ts);
}

static PyObject *frame_get_pts(FrameBaseObject *f, void *c)
{
	if (f->pts == FRAME_NOPTS)
		Py_RETURN_NONE;
	return PyLong_FromLongLong(f->pts);
}

static PyObject *frame_get_dur(FrameBaseObject *f, void *c)
{
	return PyLong_FromLongLong(f->dur);
}

static int u64_arg(PyObject *o, const char *what, uint64_t *out)
{
	unsigned long long v;

	if (!PyLong_Check(o)) {
		PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", what, Py_TYPE(o)->tp_name);
		return -1;
	}
	v = PyLong_AsUnsignedLongLong(o);
	if (v == (unsigned long long)-1 && PyErr_Occurred())
		return -1;
	*out = v;
	return 0;
}

static int i64_arg(PyObject *o, const char *what, int64_t *out)
{
	long long v;

	if (!PyLong_Check(o)) {
		PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", what, Py_TYPE(o)->tp_name);
		return -1;
	}
	v = PyLong_AsLongLong(o);
	if (v == -1 && PyErr_Occurred())
		return -1;
	*out = v;
	return 0;
}

/* FrameBase(values, geometry, view, seq, timestamp_ns, pts, duration, spec): the slow paths' frames. */
static PyObject *framebase_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	PyObject *values, *geometry, *view, *seq, *ts, *pts, *dur;
	PixelSpecObject *spec;
	FrameBaseObject *f;
	uint64_t s, t;
	int64_t p, d;

	if (kwds && PyDict_GET_SIZE(kwds)) {
		PyErr_SetString(PyExc_TypeError, "FrameBase() takes no keyword arguments");
		return NULL;
	}
	if (!PyArg_ParseTuple(args, "O!OOOOOOO!:FrameBase", &PyTuple_Type, &values, &geometry, &view, &seq, &ts, &pts,
			      &dur, &PixelSpecType, &spec))
		return NULL;
	if (u64_arg(seq, "seq", &s) || u64_arg(ts, "timestamp_ns", &t) || i64_arg(pts, "pts", &p) ||
	    i64_arg(dur, "duration", &d))
		return NULL;
	f = (FrameBaseObject *)type->tp_alloc(type, 0);
	if (!f)
		return NULL;
	f->seq = s;
	f->ts = t;
	f->pts = p;
	f->dur = d;
	f->values = Py_NewRef(values);
	f->geometry = Py_NewRef(geometry);
	f->view = Py_NewRef(view);
	f->spec = (PixelSpecObject *)Py_NewRef(spec);
	return (PyObject *)f;
}

/* A frame of the registered FrameView class (its fields are set by the caller). */
static FrameBaseObject *frame_alloc(PyObject *values, PyObject *geometry, PixelSpecObject *spec)
{
	FrameBaseObject *f;

	/* held first: the allocation may run the GC, whose finalizers may replace the cache they came from */
	Py_INCREF(values);
	Py_INCREF(geometry);
	Py_INCREF(spec);
	f = (FrameBaseObject *)frame_view_type->tp_alloc(frame_view_type, 0);
	if (!f) {
		Py_DECREF(values);
		Py_DECREF(geometry);
		Py_DECREF(spec);
		return NULL;
	}
	f->values = values;
	f->geometry = geometry;
	f->spec = spec;
	return f;
}

static void framebase_dealloc(FrameBaseObject *f)
{
	Py_CLEAR(f->pixels);
	Py_CLEAR(f->planes);
	Py_CLEAR(f->view);
	Py_CLEAR(f->values);
	Py_CLEAR(f->geometry);
	Py_CLEAR(f->spec);
	Py_TYPE(f)->tp_free((PyObject *)f); /* (a heap subclass's subtype_dealloc drops the type) */
}

static PyMemberDef framebase_members[] = {
	{"_v", T_OBJECT, offsetof(FrameBaseObject, values), READONLY, NULL},
	{"_g", T_OBJECT, offsetof(FrameBaseObject, geometry), READONLY, NULL},
	{"_view", T_OBJECT, offsetof(FrameBaseObject, view), 0, NULL},
	{"_planes", T_OBJECT, offsetof(FrameBaseObject, planes), 0, NULL},
	{NULL, 0, 0, 0, NULL},
};

static PyGetSetDef framebase_getset[] = {
	{"seq", (getter)frame_get_seq, NULL, "The writer's sequence number (by default the message's stream position).",
	 NULL},
	{"timestamp_ns", (getter)frame_get_ts, NULL, "Capture or send time, ns since the Unix epoch.", NULL},
	{"pts", (getter)frame_get_pts, NULL,
	 "Presentation time in time_base units (may be negative); None when the writer gave none.", NULL},
	{"duration", (getter)frame_get_dur, NULL, "In time_base units; 0 when unknown.", NULL},
	{"pixels", (getter)frame_get_pixels, NULL, "The pixels, a view of the slot (see FrameView).", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef framebase_methods[] = {
	{"release_views", (PyCFunction)frame_release_views_method, METH_NOARGS,
	 "release_views()\n--\n\nDrop the arrays this object made (they pin the slot while alive)."},
	{NULL, NULL, 0, NULL},
};

/* ---- FrameSlotBase ---- */

static PyObject *frameslot_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	SlotObject *slot;
	FrameBaseObject *frame;
	FrameSlotObject *fs;

	if (kwds && PyDict_GET_SIZE(kwds)) {
		PyErr_SetString(PyExc_TypeError, "FrameSlotBase() takes no keyword arguments");
		return NULL;
	}
	if (!PyArg_ParseTuple(args, "O!O!:FrameSlotBase", &SlotType, &slot, &FrameBaseType, &frame))
		return NULL;
	fs = (FrameSlotObject *)type->tp_alloc(type, 0);
	if (!fs)
		return NULL;
	fs->slot = (SlotObject *)Py_NewRef(slot);
	fs->frame = (FrameBaseObject *)Py_NewRef(frame);
	return (PyObject *)fs;
}

static void frameslot_dealloc(FrameSlotObject *fs)
{
	Py_CLEAR(fs->frame);
	Py_CLEAR(fs->slot); /* an open slot dropped uncommitted is aborted */
	Py_TYPE(fs)->tp_free((PyObject *)fs);
}

/* Forget the views of the slot, so that they do not pin it once it is published. */
static void frameslot_drop(FrameSlotObject *fs)
{
	if (fs->frame) {
		frame_release_views(fs->frame);
		Py_CLEAR(fs->frame);
	}
}

static FrameBaseObject *frameslot_frame(FrameSlotObject *fs)
{
	if (!fs->frame)
		PyErr_SetString(MessageReleasedError, "this frame was already committed or aborted");
	return fs->frame;
}

static PyObject *frameslot_get_frame(FrameSlotObject *fs, void *c)
{
	FrameBaseObject *f = frameslot_frame(fs);

	return f ? Py_NewRef(f) : NULL;
}

static PyObject *frameslot_get_pixels(FrameSlotObject *fs, void *c)
{
	FrameBaseObject *f = frameslot_frame(fs);

	return f ? frame_get_pixels(f, NULL) : NULL;
}

static PyObject *frameslot_get_planes(FrameSlotObject *fs, void *c)
{
	FrameBaseObject *f = frameslot_frame(fs);

	return f ? PyObject_GetAttrString((PyObject *)f, "planes") : NULL;
}

static PyObject *frameslot_get_slot(FrameSlotObject *fs, void *c)
{
	return Py_NewRef(fs->slot);
}

static PyObject *frameslot_commit(FrameSlotObject *fs, PyObject *unused)
{
	frameslot_drop(fs);
	return slot_commit(fs->slot, NULL, 0, NULL);
}

static PyObject *frameslot_abort(FrameSlotObject *fs, PyObject *unused)
{
	frameslot_drop(fs);
	return slot_abort(fs->slot, NULL);
}

static PyObject *frameslot_exit(FrameSlotObject *fs, PyObject *const *args, Py_ssize_t nargs)
{
	frameslot_drop(fs);
	return slot_exit(fs->slot, args, nargs);
}

static PyMethodDef frameslot_methods[] = {
	{"commit", (PyCFunction)frameslot_commit, METH_NOARGS,
	 "commit()\n--\n\nPublish the message. The arrays of this object are dropped (keep none of your own)."},
	{"abort", (PyCFunction)frameslot_abort, METH_NOARGS, "abort()\n--\n\nDrop the message; readers never see it."},
	{"__enter__", slot_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)(void (*)(void))frameslot_exit, METH_FASTCALL, NULL},
	{"__reduce__", no_pickle, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef frameslot_getset[] = {
	{"frame", (getter)frameslot_get_frame, NULL,
	 "The header fields and the writable arrays (until commit or abort).", NULL},
	{"pixels", (getter)frameslot_get_pixels, NULL, "The writable pixel array (see FrameView for its shape).", NULL},
	{"planes", (getter)frameslot_get_planes, NULL, "One writable array per plane.", NULL},
	{"slot", (getter)frameslot_get_slot, NULL, "The underlying reserved slot.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

/* ---- FrameTemplate ---- */

/* FrameTemplate(width, height, pixel_format, header, size, offsets, keyframe, values, geometry, spec) */
static PyObject *frametemplate_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	PyObject *width, *height, *fmt, *header, *size_o, *offsets, *values, *geometry;
	PixelSpecObject *spec;
	FrameTemplateObject *t;
	uint64_t size;
	int keyframe;
	Py_ssize_t hlen;

	if (kwds && PyDict_GET_SIZE(kwds)) {
		PyErr_SetString(PyExc_TypeError, "FrameTemplate() takes no keyword arguments");
		return NULL;
	}
	if (!PyArg_ParseTuple(args, "OOOO!OO!pO!OO!:FrameTemplate", &width, &height, &fmt, &PyBytes_Type, &header,
			      &size_o, &PyTuple_Type, &offsets, &keyframe, &PyTuple_Type, &values, &geometry,
			      &PixelSpecType, &spec))
		return NULL;
	if (size_arg(size_o, "size", UINT64_MAX, &size))
		return NULL;
	hlen = PyBytes_GET_SIZE(header);
	if ((uint64_t)hlen > size || PyTuple_GET_SIZE(offsets) != 4 || spec->offset < (uint64_t)hlen ||
	    spec->offset > size || spec->span > size - spec->offset) {
		PyErr_SetString(PyExc_ValueError, "a frame template's header, offsets and pixels do not fit its size");
		return NULL;
	}
	t = (FrameTemplateObject *)type->tp_alloc(type, 0);
	if (!t)
		return NULL;
	for (int i = 0; i < 4; i++) {
		Py_ssize_t o = PyLong_AsSsize_t(PyTuple_GET_ITEM(offsets, i));
		if (o == -1 && PyErr_Occurred()) {
			Py_DECREF(t);
			return NULL;
		}
		if (o < -1 || (o >= 0 && o > hlen - 8) || (i < 2 && o < 0)) {
			PyErr_Format(PyExc_ValueError, "field offset %zd outside a header of %zd bytes", o, hlen);
			Py_DECREF(t);
			return NULL;
		}
		t->off[i] = o;
	}
	t->width = Py_NewRef(width);
	t->height = Py_NewRef(height);
	t->fmt = Py_NewRef(fmt);
	t->header = Py_NewRef(header);
	t->size = size;
	t->keyframe = keyframe;
	t->values = Py_NewRef(values);
	t->geometry = Py_NewRef(geometry);
	t->spec = (PixelSpecObject *)Py_NewRef(spec);
	return (PyObject *)t;
}

static void frametemplate_dealloc(FrameTemplateObject *t)
{
	Py_XDECREF(t->width);
	Py_XDECREF(t->height);
	Py_XDECREF(t->fmt);
	Py_XDECREF(t->header);
	Py_XDECREF(t->values);
	Py_XDECREF(t->geometry);
	Py_XDECREF(t->spec);
	Py_TYPE(t)->tp_free((PyObject *)t);
}

/* ---- the writer's fast path ---- */

/* a == b as a dict key would compare them; -1 (no exception left) when the comparison raised */
static int same_arg(PyObject *a, PyObject *b)
{
	int eq;

	if (a == b)
		return 1;
	eq = PyObject_RichCompareBool(a, b, Py_EQ);
	if (eq < 0)
		PyErr_Clear();
	return eq;
}

#define NOT_HANDLED 0
#define HANDLED 1

/*
 * reserve_frame in C when the call is one Python answered before for this writer (same geometry,
 * format and per-frame flags, no media field, no channel). HANDLED with *out (NULL: an exception),
 * or NOT_HANDLED (no exception set): Python does it, with its checks and messages.
 */
static int frame_reserve_fast(WriterObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
			      PyObject **out)
{
	static const char *const names[] = {"width", "height", "pixel_format", "seq", "timestamp_ns",
					    "pts", "duration", "keyframe", "timeout"};
	PyObject *a[9] = {NULL};
	FrameTemplateObject *t = NULL;
	FrameBaseObject *f;
	FrameSlotObject *fs;
	SlotObject *slot;
	TokenObject *tok;
	uint64_t seq = 0, ts = 0;
	int64_t pts = FRAME_NOPTS, dur = 0, tns;
	int has_seq = 0, has_ts = 0, has_pts = 0, kf = 0, i;
	void *data;
	uint32_t index;
	char *p;

	if (nargs > 3 || nargs < 0 || !frame_view_type || !frame_slot_type)
		return NOT_HANDLED;
	for (i = 0; i < nargs; i++)
		a[i] = args[i];
	if (kwnames) {
		Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
		for (Py_ssize_t j = 0; j < nk; j++) {
			PyObject *k = PyTuple_GET_ITEM(kwnames, j);
			for (i = 0; i < 9; i++)
				if (PyUnicode_CompareWithASCIIString(k, names[i]) == 0)
					break;
			if (i == 9 || a[i])
				return NOT_HANDLED; /* media fields, channel=, or a mistake Python names */
			a[i] = args[nargs + j];
		}
	}
	if (!a[0] || !a[1])
		return NOT_HANDLED;
	if (!a[2])
		a[2] = frame_default_fmt;
	if (a[3] && a[3] != Py_None) {
		if (!PyLong_Check(a[3]) || (seq = PyLong_AsUnsignedLongLong(a[3])) == (uint64_t)-1)
			goto not_handled; /* (-1: out of range, or 2**64 - 1: Python decides) */
		has_seq = 1;
	}
	if (a[4] && a[4] != Py_None) {
		if (!PyLong_Check(a[4]) || (ts = PyLong_AsUnsignedLongLong(a[4])) == (uint64_t)-1)
			goto not_handled;
		has_ts = 1;
	}
	if (a[5] && a[5] != Py_None) {
		if (!PyLong_Check(a[5]) || ((pts = PyLong_AsLongLong(a[5])) == -1 && PyErr_Occurred()))
			goto not_handled;
		has_pts = 1;
	}
	if (a[6]) {
		if (!PyLong_Check(a[6]) || ((dur = PyLong_AsLongLong(a[6])) == -1 && PyErr_Occurred()))
			goto not_handled;
	}
	if (a[7] && (kf = PyObject_IsTrue(a[7])) < 0)
		goto not_handled;
	for (i = 0; i < FRAME_TPLS; i++) {
		FrameTemplateObject *c = (FrameTemplateObject *)self->frame_tpl[i];
		int eq;
		if (!c || c->keyframe != kf || (c->off[FV_PTS] >= 0) != has_pts || (c->off[FV_DUR] >= 0) != (dur != 0))
			continue;
		Py_INCREF(c); /* an __eq__ may change the cache */
		if ((eq = same_arg(c->width, a[0])) < 0 || (eq && (eq = same_arg(c->height, a[1])) < 0) ||
		    (eq && (eq = same_arg(c->fmt, a[2])) < 0)) {
			Py_DECREF(c);
			return NOT_HANDLED;
		}
		if (eq) {
			t = c; /* holds the reference */
			break;
		}
		Py_DECREF(c);
	}
	if (!t)
		return NOT_HANDLED;
	if (t->size > self->m->slot_size) {
		Py_DECREF(t);
		return NOT_HANDLED;
	}
	if (seconds_to_ns(a[8], "timeout", &tns) || !writer_usable(self)) {
		Py_DECREF(t);
		goto fail;
	}
	if (self->open) {
		PyErr_SetString(ShmchanError, "a slot is already reserved: commit or abort it first");
		Py_DECREF(t);
		goto fail;
	}
	if (writer_check_views(self) ||
	    writer_reserve(self, t->size, tns, tns == 0 ? now_ns() : deadline_of(tns), &data, &index)) {
		Py_DECREF(t);
		goto fail;
	}
	slot = slot_new(self, data, index, t->size);
	if (!slot) {
		Py_DECREF(t);
		goto fail;
	}
	p = slot->data;
	memcpy(p, PyBytes_AS_STRING(t->header), (size_t)PyBytes_GET_SIZE(t->header));
	if (!has_seq)
		seq = slot->pos;
	if (!has_ts) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		ts = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	}
	put_le64(p + t->off[FV_SEQ], seq);
	put_le64(p + t->off[FV_TS], ts);
	if (t->off[FV_PTS] >= 0)
		put_le64(p + t->off[FV_PTS], (uint64_t)pts);
	if (t->off[FV_DUR] >= 0)
		put_le64(p + t->off[FV_DUR], (uint64_t)dur);
	f = frame_alloc(t->values, t->geometry, t->spec);
	Py_DECREF(t);
	tok = f ? slot_token((PyObject *)slot) : NULL;
	fs = tok ? (FrameSlotObject *)frame_slot_type->tp_alloc(frame_slot_type, 0) : NULL;
	if (!fs) {
		Py_XDECREF(tok);
		Py_XDECREF(f);
		Py_DECREF(slot); /* aborts it */
		goto fail;
	}
	f->seq = seq;
	f->ts = ts;
	f->pts = pts;
	f->dur = dur;
	f->view = (PyObject *)tok;
	fs->slot = slot;
	fs->frame = f;
	*out = (PyObject *)fs;
	return HANDLED;
not_handled:
	PyErr_Clear();
	return NOT_HANDLED;
fail:
	*out = NULL;
	return HANDLED;
}

static PyObject *writer_reserve_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	PyObject *res;

	if (frame_reserve_fast((WriterObject *)self, args, nargs, kwnames, &res) == HANDLED)
		return res;
	return call_hook("reserve_frame", self, args, nargs, kwnames);
}

/* ---- the reader's fast path ---- */

static int frame_decode_fast(MessageObject *msg, PyObject **out)
{
	ReaderObject *rd = msg->reader;
	struct frame_cache *fc = rd->frame_cache;
	uint8_t hdr[FRAME_MAX_HEADER];
	uint64_t v[4];
	Py_ssize_t vend;
	FrameBaseObject *f;
	TokenObject *tok;

	if (!fc || msg->state != MSG_HELD || !rd->r || rd->m->forked)
		return NOT_HANDLED;
	if (msg->len < (uint64_t)fc->extent || msg->len < fc->end)
		return NOT_HANDLED; /* the full parse says what is wrong */
	memcpy(hdr, msg->data, (size_t)fc->extent); /* the one read of the slot's header */
	vend = fc->vol + 8 * fc->nvol;
	if (memcmp(hdr, fc->hdr, (size_t)fc->vol) != 0 ||
	    memcmp(hdr + vend, fc->hdr + vend, (size_t)(fc->extent - vend)) != 0)
		return NOT_HANDLED;
	memcpy(v, fc->base, sizeof(v));
	for (int i = 0; i < fc->nvol; i++)
		v[fc->kinds[i]] = get_le64(hdr + fc->vol + 8 * i);
	f = frame_alloc(fc->values, fc->geometry, fc->spec);
	if (!f)
		goto fail;
	tok = message_token((PyObject *)msg);
	if (!tok) {
		Py_DECREF(f);
		goto fail;
	}
	f->view = (PyObject *)tok;
	f->seq = v[FV_SEQ];
	f->ts = v[FV_TS];
	f->pts = (int64_t)v[FV_PTS];
	f->dur = (int64_t)v[FV_DUR];
	*out = (PyObject *)f;
	return HANDLED;
fail:
	*out = NULL;
	return HANDLED;
}

static PyObject *message_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	PyObject *res;

	if (nargs == 0 && !kwnames && frame_view_type && frame_decode_fast((MessageObject *)self, &res) == HANDLED)
		return res;
	return call_hook("frame", self, args, nargs, kwnames);
}

/* ---- what Python gives the fast paths ---- */

static PyObject *core_frame_setup(PyObject *mod, PyObject *args)
{
	PyTypeObject *view_cls, *slot_cls;
	PyObject *fmt;

	if (!PyArg_ParseTuple(args, "O!O!O", &PyType_Type, &view_cls, &PyType_Type, &slot_cls, &fmt))
		return NULL;
	if (!PyType_IsSubtype(view_cls, &FrameBaseType) || !PyType_IsSubtype(slot_cls, &FrameSlotBaseType)) {
		PyErr_SetString(PyExc_TypeError, "_frame_setup takes subclasses of FrameBase and FrameSlotBase");
		return NULL;
	}
	Py_XSETREF(frame_view_type, (PyTypeObject *)Py_NewRef(view_cls));
	Py_XSETREF(frame_slot_type, (PyTypeObject *)Py_NewRef(slot_cls));
	Py_XSETREF(frame_default_fmt, Py_NewRef(fmt));
	Py_RETURN_NONE;
}

static PyObject *core_frame_writer_cache(PyObject *mod, PyObject *args)
{
	WriterObject *w;
	FrameTemplateObject *t;
	int i;

	if (!PyArg_ParseTuple(args, "O!O!", &WriterType, &w, &FrameTemplateType, &t))
		return NULL;
	for (i = 0; i < FRAME_TPLS; i++)
		if (w->frame_tpl[i] == (PyObject *)t)
			Py_RETURN_NONE;
	i = (int)(w->frame_tpl_next++ % FRAME_TPLS);
	Py_XSETREF(w->frame_tpl[i], Py_NewRef(t));
	Py_RETURN_NONE;
}

/* _frame_reader_cache(message, header, vol, kinds, base, end, values, geometry, spec) */
static PyObject *core_frame_reader_cache(PyObject *mod, PyObject *args)
{
	MessageObject *msg;
	PyObject *header, *kinds, *base, *values, *geometry, *end_o;
	PixelSpecObject *spec;
	Py_ssize_t vol, n, nvol;
	struct frame_cache *fc;
	int seen = 0;

	if (!PyArg_ParseTuple(args, "O!O!nO!O!OO!OO!", &MessageType, &msg, &PyBytes_Type, &header, &vol, &PyTuple_Type,
			      &kinds, &PyTuple_Type, &base, &end_o, &PyTuple_Type, &values, &geometry, &PixelSpecType,
			      &spec))
		return NULL;
	n = PyBytes_GET_SIZE(header);
	nvol = PyTuple_GET_SIZE(kinds);
	if (n > FRAME_MAX_HEADER || nvol < 1 || nvol > 4 || vol < 0 || vol > n - 8 * nvol ||
	    PyTuple_GET_SIZE(base) != 4) {
		PyErr_SetString(PyExc_ValueError, "a frame header cache that does not fit its header");
		return NULL;
	}
	fc = PyMem_Calloc(1, sizeof(*fc));
	if (!fc)
		return PyErr_NoMemory();
	fc->hdr = PyMem_Malloc((size_t)n ? (size_t)n : 1);
	if (!fc->hdr) {
		PyMem_Free(fc);
		return PyErr_NoMemory();
	}
	memcpy(fc->hdr, PyBytes_AS_STRING(header), (size_t)n);
	fc->extent = n;
	fc->vol = vol;
	fc->nvol = (int)nvol;
	for (int i = 0; i < 4; i++) {
		PyObject *b = PyTuple_GET_ITEM(base, i);
		int64_t sv;
		if (i < 2 ? u64_arg(b, "base", &fc->base[i]) : i64_arg(b, "base", &sv))
			goto fail;
		if (i >= 2)
			fc->base[i] = (uint64_t)sv;
	}
	for (Py_ssize_t i = 0; i < nvol; i++) {
		long k = PyLong_AsLong(PyTuple_GET_ITEM(kinds, i));
		if (k == -1 && PyErr_Occurred())
			goto fail;
		if (k < 0 || k > 3 || (seen & (1 << k))) {
			PyErr_SetString(PyExc_ValueError, "per-message field kinds must be distinct, 0..3");
			goto fail;
		}
		seen |= 1 << k;
		fc->kinds[i] = (int)k;
	}
	if (size_arg(end_o, "end", UINT64_MAX, &fc->end))
		goto fail;
	fc->values = Py_NewRef(values);
	fc->geometry = Py_NewRef(geometry);
	fc->spec = (PixelSpecObject *)Py_NewRef(spec);
	frame_cache_free(msg->reader->frame_cache);
	msg->reader->frame_cache = fc;
	Py_RETURN_NONE;
fail:
	frame_cache_free(fc);
	return NULL;
}

static PyObject *core_frame_reader_forget(PyObject *mod, PyObject *arg)
{
	ReaderObject *rd;

	if (PyObject_TypeCheck(arg, &MessageType))
		rd = ((MessageObject *)arg)->reader;
	else if (PyObject_TypeCheck(arg, &ReaderType))
		rd = (ReaderObject *)arg;
	else {
		PyErr_SetString(PyExc_TypeError, "_frame_reader_forget takes a Reader or a Message");
		return NULL;
	}
	frame_cache_free(rd->frame_cache);
	rd->frame_cache = NULL;
	Py_RETURN_NONE;
}

static PyObject *core_frame_reader_cached(PyObject *mod, PyObject *arg)
{
	if (!PyObject_TypeCheck(arg, &ReaderType)) {
		PyErr_SetString(PyExc_TypeError, "_frame_reader_cached takes a Reader");
		return NULL;
	}
	return PyBool_FromLong(((ReaderObject *)arg)->frame_cache != NULL);
}

static PyTypeObject PixelSpecType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._core.PixelSpec",
	.tp_basicsize = sizeof(PixelSpecObject),
	.tp_dealloc = (destructor)pixelspec_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "PixelSpec(shape, strides, offset, dtype): how a frame's pixel array lies over its message.",
	.tp_new = pixelspec_new,
};

static PyTypeObject FrameBaseType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._core.FrameBase",
	.tp_basicsize = sizeof(FrameBaseObject),
	.tp_dealloc = (destructor)framebase_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "The native part of shmchan.schema.FrameView.",
	.tp_new = framebase_new,
	.tp_members = framebase_members,
	.tp_getset = framebase_getset,
	.tp_methods = framebase_methods,
};

static PyTypeObject FrameSlotBaseType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._core.FrameSlotBase",
	.tp_basicsize = sizeof(FrameSlotObject),
	.tp_dealloc = (destructor)frameslot_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "The native part of shmchan.schema.FrameSlot.",
	.tp_new = frameslot_new,
	.tp_methods = frameslot_methods,
	.tp_getset = frameslot_getset,
};

static PyTypeObject FrameTemplateType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._core.FrameTemplate",
	.tp_basicsize = sizeof(FrameTemplateObject),
	.tp_dealloc = (destructor)frametemplate_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A writer's Frame header template and the reserve_frame arguments it answers.",
	.tp_new = frametemplate_new,
};

/* ---------------------------------------------------------------------------------------------- */
/* type objects */

static PyTypeObject MappingType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._core.Mapping",
	.tp_basicsize = sizeof(MappingObject),
	.tp_dealloc = (destructor)mapping_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "The C channel handle and the lifetime of its mapping.",
	.tp_new = mapping_new,
	.tp_methods = mapping_methods,
	.tp_getset = mapping_getset,
	.tp_weaklistoffset = offsetof(MappingObject, weakreflist),
};

static PyTypeObject WriterType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._core.Writer",
	.tp_basicsize = sizeof(WriterObject),
	.tp_dealloc = (destructor)writer_dealloc,
	.tp_repr = (reprfunc)writer_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
	.tp_traverse = (traverseproc)writer_traverse,
	.tp_clear = (inquiry)writer_clear,
	.tp_doc = "The channel's one writer. Get it from Channel.writer().",
	.tp_methods = writer_methods,
	.tp_getset = writer_getset,
	.tp_weaklistoffset = offsetof(WriterObject, weakreflist),
};

static PyTypeObject SlotType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._core.Slot",
	.tp_basicsize = sizeof(SlotObject),
	.tp_dealloc = (destructor)slot_dealloc,
	.tp_repr = (reprfunc)slot_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A reserved slot: fill it in place, then commit() (or abort()). As a context manager it commits "
		  "on normal exit and aborts when the block raises, so readers never see a half-written message.",
	.tp_methods = slot_methods,
	.tp_getset = slot_getset,
};

static PyTypeObject ReaderType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._core.Reader",
	.tp_basicsize = sizeof(ReaderObject),
	.tp_dealloc = (destructor)reader_dealloc,
	.tp_repr = (reprfunc)reader_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
	.tp_traverse = (traverseproc)reader_traverse,
	.tp_clear = (inquiry)reader_clear,
	.tp_doc = "A reader of the channel. Get it from Channel.reader(). Iterating yields messages until the "
		  "writer closes and the ring is drained; each is released when the loop moves on.",
	.tp_iter = reader_iter,
	.tp_iternext = (iternextfunc)reader_iternext,
	.tp_methods = reader_methods,
	.tp_getset = reader_getset,
	.tp_weaklistoffset = offsetof(ReaderObject, weakreflist),
};

static PyTypeObject MessageType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._core.Message",
	.tp_basicsize = sizeof(MessageObject),
	.tp_dealloc = (destructor)message_dealloc,
	.tp_repr = (reprfunc)message_repr,
	.tp_as_sequence = &message_as_sequence,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A received message. Its views point into the slot; release it (with does) when done. A view "
		  "kept after release stays valid and unchanged: the slot goes back to the writer when the last "
		  "view of it is gone. A message dropped unreleased is released then.",
	.tp_methods = message_methods,
	.tp_getset = message_getset,
};

static PyTypeObject TokenType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._core.SlotView",
	.tp_basicsize = sizeof(TokenObject),
	.tp_dealloc = (destructor)token_dealloc,
	.tp_as_buffer = &token_as_buffer,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_traverse = (traverseproc)token_traverse,
	.tp_clear = (inquiry)token_clear,
	.tp_doc = "The memory of one message or slot; while any view of it lives, the slot stays pinned.",
};

/* ---------------------------------------------------------------------------------------------- */
/* module */

static void after_fork_child(void)
{
	/* the child has one thread: ours. No Python API here. */
	for (MappingObject *m = all_mappings; m; m = m->next) {
		if (m->ch && !m->forked && C)
			C->forget_inherited(m->ch);
		m->forked = 1;
	}
	fork_generation++;
	pthread_mutex_init(&all_lock, NULL);
}

static void before_fork(void)
{
	pthread_mutex_lock(&all_lock);
}

static void after_fork_parent(void)
{
	pthread_mutex_unlock(&all_lock);
}

static PyObject *core_bind(PyObject *mod, PyObject *args)
{
	unsigned long long address;
	PyObject *raiser;
	const struct shmchan_capi *t;

	if (!PyArg_ParseTuple(args, "KO", &address, &raiser))
		return NULL;
	t = (const struct shmchan_capi *)(uintptr_t)address;
	if (!t || t->magic != SHMCHAN_CAPI_MAGIC || t->version != SHMCHAN_CAPI_VERSION ||
	    t->size != sizeof(struct shmchan_capi)) {
		PyErr_SetString(PyExc_ImportError,
				"shmchan._core does not match the compiled core (rebuild the package)");
		return NULL;
	}
	C = t;
	Py_INCREF(raiser);
	Py_XSETREF(raise_for, raiser);
	Py_RETURN_NONE;
}

static PyObject *core_set_hook(PyObject *mod, PyObject *args)
{
	const char *name;
	PyObject *fn;

	if (!PyArg_ParseTuple(args, "sO", &name, &fn))
		return NULL;
	if (PyDict_SetItemString(hooks, name, fn) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *core_at_exit(PyObject *mod, PyObject *unused)
{
	exiting = 1;
	Py_RETURN_NONE;
}

static PyObject *core_seconds_to_ns(PyObject *mod, PyObject *arg)
{
	int64_t ns;

	if (seconds_to_ns(arg, "timeout", &ns))
		return NULL;
	return PyLong_FromLongLong(ns);
}

static PyObject *core_spin_to_ns(PyObject *mod, PyObject *arg)
{
	int64_t ns;

	if (spin_to_ns(arg, &ns))
		return NULL;
	if (ns == -2)
		Py_RETURN_NONE;
	return PyLong_FromLongLong(ns);
}

static PyMethodDef core_methods[] = {
	{"_bind", core_bind, METH_VARARGS, "Bind to the core's function table (address) and the error raiser."},
	{"_set_hook", core_set_hook, METH_VARARGS, "Register a Python function a native method forwards to."},
	{"_at_exit", core_at_exit, METH_NOARGS, "The interpreter is exiting: from now on, call nothing in the core."},
	{"seconds_to_ns", core_seconds_to_ns, METH_O,
	 "A timeout in seconds as nanoseconds: -1 for None (and for values too large); ValueError for NaN and "
	 "negative values."},
	{"spin_to_ns", core_spin_to_ns, METH_O, "A spin in seconds as nanoseconds (None: None)."},
	{"_frame_setup", core_frame_setup, METH_VARARGS,
	 "Register the FrameView and FrameSlot classes and reserve_frame's default pixel format."},
	{"_frame_writer_cache", core_frame_writer_cache, METH_VARARGS,
	 "Let Writer.reserve_frame answer the calls a FrameTemplate was built for in C."},
	{"_frame_reader_cache", core_frame_reader_cache, METH_VARARGS,
	 "Keep a validated Frame header for Message.frame's fast path on the message's reader."},
	{"_frame_reader_forget", core_frame_reader_forget, METH_O, "Drop a reader's cached Frame header."},
	{"_frame_reader_cached", core_frame_reader_cached, METH_O, "Whether a reader has a cached Frame header."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
	PyModuleDef_HEAD_INIT, "shmchan._core", "shmchan's native data plane.", -1, core_methods,
};

static int load_error(PyObject *errors, const char *name, PyObject **out)
{
	*out = PyObject_GetAttrString(errors, name);
	return *out ? 0 : -1;
}

PyMODINIT_FUNC PyInit__core(void)
{
	PyObject *mod, *errors;

	import_array();
	u8_descr = PyArray_DescrFromType(NPY_UINT8);
	if (!u8_descr)
		return NULL;
	errors = PyImport_ImportModule("shmchan.errors");
	if (!errors)
		return NULL;
	if (load_error(errors, "ShmchanError", &ShmchanError) ||
	    load_error(errors, "ChannelClosedError", &ChannelClosedError) ||
	    load_error(errors, "ChannelEmptyError", &ChannelEmptyError) ||
	    load_error(errors, "ChannelFullError", &ChannelFullError) ||
	    load_error(errors, "ChannelTimeoutError", &ChannelTimeoutError) ||
	    load_error(errors, "ChannelEndedError", &ChannelEndedError) ||
	    load_error(errors, "PeerDeadError", &PeerDeadError) ||
	    load_error(errors, "MessageReleasedError", &MessageReleasedError) ||
	    load_error(errors, "LappedError", &LappedError) || load_error(errors, "ChannelBusyError", &ChannelBusyError)) {
		Py_DECREF(errors);
		return NULL;
	}
	Py_DECREF(errors);
	hooks = PyDict_New();
	if (!hooks)
		return NULL;
	if (PyType_Ready(&MappingType) < 0 || PyType_Ready(&WriterType) < 0 || PyType_Ready(&SlotType) < 0 ||
	    PyType_Ready(&ReaderType) < 0 || PyType_Ready(&MessageType) < 0 || PyType_Ready(&TokenType) < 0 ||
	    PyType_Ready(&PixelSpecType) < 0 || PyType_Ready(&FrameBaseType) < 0 ||
	    PyType_Ready(&FrameSlotBaseType) < 0 || PyType_Ready(&FrameTemplateType) < 0)
		return NULL;
	mod = PyModule_Create(&core_module);
	if (!mod)
		return NULL;
	if (PyModule_AddObjectRef(mod, "Mapping", (PyObject *)&MappingType) < 0 ||
	    PyModule_AddObjectRef(mod, "Writer", (PyObject *)&WriterType) < 0 ||
	    PyModule_AddObjectRef(mod, "Slot", (PyObject *)&SlotType) < 0 ||
	    PyModule_AddObjectRef(mod, "Reader", (PyObject *)&ReaderType) < 0 ||
	    PyModule_AddObjectRef(mod, "Message", (PyObject *)&MessageType) < 0 ||
	    PyModule_AddObjectRef(mod, "SlotView", (PyObject *)&TokenType) < 0 ||
	    PyModule_AddObjectRef(mod, "PixelSpec", (PyObject *)&PixelSpecType) < 0 ||
	    PyModule_AddObjectRef(mod, "FrameBase", (PyObject *)&FrameBaseType) < 0 ||
	    PyModule_AddObjectRef(mod, "FrameSlotBase", (PyObject *)&FrameSlotBaseType) < 0 ||
	    PyModule_AddObjectRef(mod, "FrameTemplate", (PyObject *)&FrameTemplateType) < 0) {
		Py_DECREF(mod);
		return NULL;
	}
	if (pthread_atfork(before_fork, after_fork_parent, after_fork_child) != 0) {
		Py_DECREF(mod);
		PyErr_SetString(PyExc_ImportError, "pthread_atfork failed");
		return NULL;
	}
	return mod;
}
