// SPDX-License-Identifier: MIT
//go:build linux && amd64

package shmchan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Channel is an open channel: the object's descriptor (holding the byte-0 lock, R11) and its
// mapping. It is an io.Closer; Close is idempotent. A Channel and its Writer, Reader and Board
// are not safe for concurrent use by several goroutines; use separate Channels for that.
type Channel struct {
	name       string // shm path, file path, or "memfd:shmchan" for a sealed channel
	sealed     bool   // an anonymous memfd received from a server (R34): it has no name
	fd         int
	mem        []byte
	g          Geometry
	creator    bool
	descriptor []byte
	writer     *Writer
	reader     *Reader
	broken     error // set by the first corruption found; every later call returns it
	sleepMu    sync.Mutex
	sleepers   int // counted sleepers (goroutines) of this handle: the first takes lockSleepers (R21)
}

// OpenOptions tunes Open and OpenFile.
type OpenOptions struct {
	// Timeout bounds the wait for a creator that is still initialising (R7); 0 means 2 s.
	Timeout time.Duration
	// AllowForeign opens channels owned by another user or writable by group or others (R6).
	AllowForeign bool
}

// ValidName reports whether name is a valid channel name (R4).
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 247 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func shmPath(name string) (string, error) {
	if !ValidName(name) {
		return "", errf(ErrInvalid, "invalid channel name %q: use 1-247 of A-Z a-z 0-9 _ . -, not starting with . or -", name)
	}
	return "/dev/shm/shmchan." + name, nil
}

func sysErr(err error, what string) error {
	switch {
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%w: %s: %v", ErrExists, what, err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: %s: %v", ErrNotFound, what, err)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w: %s: %v", ErrPermission, what, err)
	}
	return fmt.Errorf("shmchan: %s: %w", what, err)
}

// Create makes the channel NAME (R5): /dev/shm/shmchan.NAME, never adopting an existing object.
func Create(name string, cfg Config) (*Channel, error) {
	p, err := shmPath(name)
	if err != nil {
		return nil, err
	}
	return create(p, false, cfg)
}

// CreateFile makes a file-backed channel at path (R5, R33).
func CreateFile(path string, cfg Config) (*Channel, error) {
	if path == "" {
		return nil, errf(ErrInvalid, "empty path")
	}
	return create(path, true, cfg)
}

func create(path string, file bool, cfg Config) (*Channel, error) {
	kind := cfg.Kind
	if kind == 0 {
		kind = KindSPSC
	}
	if cfg.Msync > MsyncExplicit {
		return nil, errf(ErrInvalid, "msync policy %d", cfg.Msync)
	}
	g, err := geometry(kind, cfg.Capacity, cfg.SlotSize, cfg.SlotAlign, cfg.MaxReaders, cfg.Policy, uint64(len(cfg.Descriptor)))
	if err != nil {
		return nil, err
	}
	g.Flags = uint32(cfg.Msync)
	flags := unix.O_RDWR | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC
	if file {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, flags, 0o600)
	if err != nil {
		return nil, sysErr(err, "cannot create "+path)
	}
	fail := func(e error) (*Channel, error) {
		_ = unix.Unlink(path) // we created it: nothing else may be left behind (R5)
		_ = unix.Close(fd)
		return nil, e
	}
	// first of all the attach lock: openers wait for a creator only while somebody holds it (R7, R11)
	if err := lockByte(fd, lockAttach, false); err != nil {
		return fail(fmt.Errorf("shmchan: cannot take the attach lock: %w", err))
	}
	mode := cfg.Mode
	if mode == 0 {
		mode = 0o600
	}
	if err := unix.Fchmod(fd, mode&0o7777); err != nil { // exact, whatever the umask (R5, R6)
		return fail(sysErr(err, "fchmod"))
	}
	if err := unix.Ftruncate(fd, int64(g.TotalSize)); err != nil {
		return fail(sysErr(err, "ftruncate"))
	}
	// allocate now, so that a full /dev/shm fails here (ENOSPC) and never as SIGBUS later
	if err := unix.Fallocate(fd, 0, 0, int64(g.TotalSize)); err != nil {
		return fail(fmt.Errorf("shmchan: cannot allocate %d bytes: %w", g.TotalSize, err))
	}
	mem, err := mapAligned(fd, g.TotalSize, g.SlotAlign)
	if err != nil {
		return fail(fmt.Errorf("shmchan: mmap of %d bytes: %w", g.TotalSize, err))
	}
	c := &Channel{name: path, fd: fd, mem: mem, g: g, creator: true}
	var now unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &now)
	g.CreatorPid, g.CreatedNs = uint32(os.Getpid()), uint64(now.Nano())
	st16 := func(off uint64, v uint16) { binary.LittleEndian.PutUint16(mem[off:], v) } // before magic: nobody reads yet
	st16(offVersionMajor, VersionMajor)
	st16(offVersionMinor, VersionMinor)
	atomic.StoreUint32(c.u32(offKind), uint32(g.Kind))
	atomic.StoreUint32(c.u32(offFlags), g.Flags)
	atomic.StoreUint32(c.u32(offCapacity), g.Capacity)
	atomic.StoreUint64(c.u64(offSlotSize), g.SlotSize)
	atomic.StoreUint64(c.u64(offSlotStride), g.SlotStride)
	atomic.StoreUint32(c.u32(offSlotAlign), g.SlotAlign)
	atomic.StoreUint32(c.u32(offCreatorPid), g.CreatorPid)
	atomic.StoreUint64(c.u64(offLensOffset), g.LensOffset)
	atomic.StoreUint64(c.u64(offDataOffset), g.DataOffset)
	atomic.StoreUint64(c.u64(offTotalSize), g.TotalSize)
	atomic.StoreUint64(c.u64(offCreatedNs), g.CreatedNs)
	atomic.StoreUint64(c.u64(offDescOffset), g.DescriptorOffset)
	atomic.StoreUint64(c.u64(offDescSize), g.DescriptorSize)
	atomic.StoreUint32(c.u32(offMaxReaders), g.MaxReaders)
	atomic.StoreUint32(c.u32(offPolicy), uint32(g.Policy))
	atomic.StoreUint64(c.u64(offReadersOffset), g.ReadersOffset)
	copy(mem[g.DescriptorOffset:], cfg.Descriptor)
	// (H) release: every identity field before the magic; pairs with (I)
	atomic.StoreUint64(c.u64(offMagic), Magic)
	c.g = g
	c.descriptor = append([]byte(nil), cfg.Descriptor...)
	return c, nil
}

// Open attaches to the existing channel NAME (R7).
func Open(name string, opt OpenOptions) (*Channel, error) {
	p, err := shmPath(name)
	if err != nil {
		return nil, err
	}
	return open(p, opt)
}

// OpenFile attaches to a file-backed channel (R7).
func OpenFile(path string, opt OpenOptions) (*Channel, error) {
	if path == "" {
		return nil, errf(ErrInvalid, "empty path")
	}
	return open(path, opt)
}

func recentlyChanged(st *unix.Stat_t) bool {
	var now unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &now)
	return now.Nano()-st.Ctim.Nano() < int64(100*time.Millisecond)
}

func open(path string, opt OpenOptions) (*Channel, error) {
	// R7: never follow a symlink at the name, never block on a FIFO, and refuse anything but a
	// regular file (anybody can put a FIFO, a directory or a socket in /dev/shm)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	var st unix.Stat_t
	if err != nil {
		if (errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENXIO)) &&
			unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, errf(ErrIncompatible, "%s is %s, not a channel", path, fileType(st.Mode))
		}
		return nil, sysErr(err, "cannot open "+path)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, sysErr(err, "fstat")
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = unix.Close(fd)
		return nil, errf(ErrIncompatible, "%s is %s, not a channel", path, fileType(st.Mode))
	}
	return attach(fd, path, false, opt)
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	}
	return "not a regular file"
}

// attach opens the channel behind fd (R7), which it owns from now on: closed on failure.
func attach(fd int, path string, sealed bool, opt OpenOptions) (*Channel, error) {
	timeout := opt.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	deadline := monoNow() + timeout
	var err error
	fail := func(e error) (*Channel, error) {
		_ = unix.Close(fd)
		return nil, e
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(sysErr(err, "fstat"))
	}
	if !opt.AllowForeign { // R6
		if st.Uid != uint32(os.Geteuid()) {
			return fail(errf(ErrPermission, "%s is owned by uid %d, not by this user (uid %d)", path, st.Uid, os.Geteuid()))
		}
		if st.Mode&(unix.S_IWGRP|unix.S_IWOTH) != 0 {
			return fail(errf(ErrPermission, "%s is writable by group or others (mode %04o), so another user could corrupt it",
				path, st.Mode&0o7777))
		}
	}
	if err := lockByte(fd, lockAttach, false); err != nil { // R11; busy: a reclaimer holds it (R13)
		if errors.Is(err, ErrBusy) {
			return fail(errf(ErrBusy, "%s is being reclaimed", path))
		}
		return fail(fmt.Errorf("shmchan: cannot take the attach lock: %w", err))
	}
	var g Geometry
	orphanLooks := 0
	for {
		if err := unix.Fstat(fd, &st); err != nil {
			return fail(sysErr(err, "fstat"))
		}
		err = errf(ErrNotInitialised, "%s holds %d bytes, less than a header", path, st.Size)
		if st.Size >= HeaderSize {
			g, err = readHeader(fd, uint64(st.Size))
			if !errors.Is(err, ErrNotInitialised) {
				break
			}
		}
		// not initialised: wait while a creator may still be at work (R7 step 3)
		if byteLocked(fd, lockAttach) || recentlyChanged(&st) {
			orphanLooks = 0
		} else if orphanLooks++; orphanLooks >= 2 {
			return fail(fmt.Errorf("%w; no process holds it (its creator died during initialisation?)", err))
		}
		if monoNow() >= deadline {
			return fail(err)
		}
		time.Sleep(time.Millisecond)
	}
	if err == nil && g.Flags&flagSealed != 0 && !sealed {
		err = errf(ErrCorrupt, "the header says sealed memfd, but %s has a name", path)
	}
	if err != nil {
		return fail(fmt.Errorf("channel %s: %w", path, err))
	}
	mem, err := mapAligned(fd, g.TotalSize, g.SlotAlign)
	if err != nil {
		return fail(fmt.Errorf("shmchan: mmap of %d bytes: %w", g.TotalSize, err))
	}
	c := &Channel{name: path, sealed: sealed, fd: fd, mem: mem, g: g}
	// the descriptor is immutable: read it once (R47)
	c.descriptor = append([]byte(nil), mem[g.DescriptorOffset:g.DescriptorOffset+g.DescriptorSize]...)
	return c, nil
}

// readHeader maps the first 1024 bytes, loads magic (acquire, I), copies the header once and
// validates the copy (R3, R9).
func readHeader(fd int, size uint64) (Geometry, error) {
	p, err := unix.MmapPtr(fd, 0, nil, HeaderSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return Geometry{}, fmt.Errorf("shmchan: mmap of the header: %w", err)
	}
	defer func() { _ = unix.MunmapPtr(p, HeaderSize) }()
	// (I) acquire: the identity fields are complete once magic is set; pairs with (H)
	if atomic.LoadUint64((*uint64)(p)) == 0 {
		return Geometry{}, errf(ErrNotInitialised, "the header is not initialised yet (magic is zero)")
	}
	var hdr [HeaderSize]byte
	copy(hdr[:], unsafe.Slice((*byte)(p), HeaderSize))
	return ValidateHeader(hdr[:], size)
}

// Close detaches this handle's writer and reader, unmaps the channel and drops its locks. It never
// removes the name (see Unlink). Idempotent.
func (c *Channel) Close() error {
	if c == nil || c.mem == nil {
		return nil
	}
	if c.writer != nil {
		_ = c.writer.Close()
	}
	if c.reader != nil {
		_ = c.reader.Close()
	}
	unmap(c.mem)
	c.mem = nil
	return unix.Close(c.fd) // drops this handle's OFD locks
}

// Unlink removes the channel's name (R8: for its creator, or on its user's request).
func (c *Channel) Unlink() error {
	if c.sealed {
		return errf(ErrInvalid, "a sealed channel has no name")
	}
	if err := unix.Unlink(c.name); err != nil {
		return sysErr(err, "cannot remove "+c.name)
	}
	return nil
}

// Unlink removes the name of the channel NAME.
func Unlink(name string) error {
	p, err := shmPath(name)
	if err != nil {
		return err
	}
	if err := unix.Unlink(p); err != nil {
		return sysErr(err, "cannot remove "+p)
	}
	return nil
}

func (c *Channel) live() error {
	if c.mem == nil {
		return ErrClosed
	}
	return c.broken
}

// poison marks the handle broken: every later call fails with the same corruption error (R3).
func (c *Channel) poison(format string, args ...any) error {
	if c.broken == nil {
		c.broken = errf(ErrCorrupt, "channel %s: %s", c.name, fmt.Sprintf(format, args...))
	}
	return c.broken
}

// Geometry returns the validated geometry.
func (c *Channel) Geometry() Geometry { return c.g }

// Kind is the channel's kind.
func (c *Channel) Kind() Kind { return c.g.Kind }

// Descriptor returns the channel's immutable descriptor bytes (nil when it has none).
func (c *Channel) Descriptor() []byte { return c.descriptor }

// Path is the object's path (/dev/shm/shmchan.NAME, or the file).
func (c *Channel) Path() string { return c.name }

// IsCreator says whether this handle created the channel.
func (c *Channel) IsCreator() bool { return c.creator }

// Flush writes the whole mapping back to its file (MS_SYNC): the explicit msync policy (R33).
func (c *Channel) Flush() error {
	if err := c.live(); err != nil {
		return err
	}
	return unix.Msync(c.mem, unix.MS_SYNC)
}

func (c *Channel) syncFlags() int {
	switch Msync(c.g.Flags & flagMsyncMask) {
	case MsyncSync:
		return unix.MS_SYNC
	case MsyncAsync:
		return unix.MS_ASYNC
	}
	return 0
}

// syncRange msyncs [off, off+n) from the start of its page (R33).
func (c *Channel) syncRange(off, n uint64, flags int) {
	page := uint64(unix.Getpagesize())
	start := off &^ (page - 1)
	if n == 0 {
		n = 1
	}
	_ = unix.Msync(c.mem[start:off+n], flags)
}

func (c *Channel) slot(s uint32) []byte {
	off := c.g.DataOffset + uint64(s)*c.g.SlotStride
	return c.mem[off : off+c.g.SlotSize : off+c.g.SlotSize]
}

// peerAlive implements R17 for the writer (byte 1) or the SPSC reader (byte 2).
func (c *Channel) peerAlive(writerSide bool) bool {
	stOff, genOff, lock := uint64(offReaderState), uint64(offReaderGen), int64(lockReader)
	if writerSide {
		if c.writer != nil {
			return true // our own lock does not show in F_OFD_GETLK
		}
		stOff, genOff, lock = offWriterState, offWriterGen, lockWriter
	} else if c.reader != nil {
		return true
	}
	s1 := atomic.LoadUint32(c.u32(stOff)) // (L1) acquire: pairs with (L0)
	g1 := atomic.LoadUint64(c.u64(genOff))
	if s1 != peerAttached || byteLocked(c.fd, lock) {
		return true
	}
	s2 := atomic.LoadUint32(c.u32(stOff)) // (L2) acquire: pairs with (L0)
	g2 := atomic.LoadUint64(c.u64(genOff))
	return !(s2 == peerAttached && g1 == g2)
}

// Stats are the header's counters and positions (R28), a snapshot for people.
type Stats struct {
	Head, Tail                                       uint64
	MessagesWritten, BytesWritten, FullWaits, Aborts uint64
	MessagesRead, BytesRead, EmptyWaits              uint64
	WriterState, ReaderState                         uint32
	WriterPid, ReaderPid                             uint32
}

// Stats reads the counters (relaxed reads; fields may be mutually stale).
func (c *Channel) Stats() (Stats, error) {
	if err := c.live(); err != nil {
		return Stats{}, err
	}
	ld := func(off uint64) uint64 { return atomic.LoadUint64(c.u64(off)) }
	ld32 := func(off uint64) uint32 { return atomic.LoadUint32(c.u32(off)) }
	return Stats{Head: ld(offHead), Tail: ld(offTail), MessagesWritten: ld(offWMessages), BytesWritten: ld(offWBytes),
		FullWaits: ld(offWFull), Aborts: ld(offWAborts), MessagesRead: ld(offRMessages), BytesRead: ld(offRBytes),
		EmptyWaits: ld(offREmpty), WriterState: ld32(offWriterState), ReaderState: ld32(offReaderState),
		WriterPid: ld32(offWriterPid), ReaderPid: ld32(offReaderPid)}, nil
}
