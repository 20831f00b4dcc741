/* SPDX-License-Identifier: MIT */
/* The only place shared memory is touched: C11 atomics behind wrappers named for their ordering. */
#ifndef SHMCHAN_ATOMIC_H
#define SHMCHAN_ATOMIC_H

#include <stdatomic.h>
#include <stdint.h>

/*
 * Every field of the shared header is declared _Atomic in layout.h. Code outside this file never
 * reads or writes one directly: it calls one of these, so the ordering of every access is written
 * at the call site and a lint test (tests/test_c_lint.py) can check that nothing else touches the
 * header. Each acquire/release call site carries a comment naming the barrier it pairs with; the
 * table of pairs is in docs/protocol.md.
 */

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free to share them between processes");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free to share them between processes");

/* Relaxed: a single untorn access, no ordering. For fields whose order is given by a barrier. */
static inline uint64_t shmchan_read_once64(const _Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}
static inline uint32_t shmchan_read_once32(const _Atomic uint32_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}
static inline uint16_t shmchan_read_once16(const _Atomic uint16_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}
static inline void shmchan_write_once64(_Atomic uint64_t *p, uint64_t v)
{
	atomic_store_explicit(p, v, memory_order_relaxed);
}
static inline void shmchan_write_once32(_Atomic uint32_t *p, uint32_t v)
{
	atomic_store_explicit(p, v, memory_order_relaxed);
}
static inline void shmchan_write_once16(_Atomic uint16_t *p, uint16_t v)
{
	atomic_store_explicit(p, v, memory_order_relaxed);
}

/* Acquire: later reads and writes cannot move before this load. */
static inline uint64_t shmchan_load_acquire64(const _Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_acquire);
}
static inline uint32_t shmchan_load_acquire32(const _Atomic uint32_t *p)
{
	return atomic_load_explicit(p, memory_order_acquire);
}

/* Release: earlier reads and writes cannot move after this store. */
static inline void shmchan_store_release64(_Atomic uint64_t *p, uint64_t v)
{
	atomic_store_explicit(p, v, memory_order_release);
}
static inline void shmchan_store_release32(_Atomic uint32_t *p, uint32_t v)
{
	atomic_store_explicit(p, v, memory_order_release);
}

/* Read-modify-write, full ordering: counts of sleepers that several processes change. */
static inline uint32_t shmchan_fetch_add32(_Atomic uint32_t *p, uint32_t v)
{
	return atomic_fetch_add_explicit(p, v, memory_order_seq_cst);
}
static inline uint32_t shmchan_fetch_sub32(_Atomic uint32_t *p, uint32_t v)
{
	return atomic_fetch_sub_explicit(p, v, memory_order_seq_cst);
}

/* Release fence: stores before it are visible before stores after it (a seqlock writer's stamp
   before the payload it is about to overwrite). */
static inline void shmchan_fence_release(void)
{
	atomic_thread_fence(memory_order_release);
}

/* Full fence: orders an earlier store before a later load (the Dekker pattern of the wait flags). */
static inline void shmchan_fence_seq_cst(void)
{
	atomic_thread_fence(memory_order_seq_cst);
}

/* Acquire fence: reads before it cannot move after later loads (the seqlock re-check). */
static inline void shmchan_fence_acquire(void)
{
	atomic_thread_fence(memory_order_acquire);
}

/* Spin-wait hint: lets the sibling hyperthread run and saves power while polling. */
static inline void shmchan_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

#endif
