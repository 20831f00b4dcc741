/* SPDX-License-Identifier: MIT */
/* SlotBuffer: one slot of a mapped channel, counting the live views made from it, so views are leases. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/*
 * Every memoryview or numpy array a user gets from a slot is made from a SlotView: a small exporter
 * made per view() call, holding its SlotBuffer. Whatever keeps the memory reachable keeps the
 * SlotView alive -- a buffer export (memoryview, slices, np.frombuffer) or a plain reference as
 * the base object (np.ndarray(buffer=...) drops its export and keeps only mv.obj). So counting live
 * SlotViews on the SlotBuffer is exact: the Python layer hands a slot back to the writer only when
 * the count is zero and refuses to close the channel while any is non-zero. The SlotBuffer keeps its
 * owner (the mapping) alive, so a view can never outlive the memory it points into.
 */

typedef struct {
	PyObject_HEAD
	PyObject *owner;
	char *addr;       /* NULL once the channel is closed */
	Py_ssize_t size;  /* the slot's capacity in bytes */
	Py_ssize_t views; /* live SlotView objects */
	int readonly;
} SlotBuffer;

typedef struct {
	PyObject_HEAD
	SlotBuffer *slot;
	Py_ssize_t len;
} SlotView;

static void sv_dealloc(PyObject *obj)
{
	SlotView *self = (SlotView *)obj;

	self->slot->views--;
	Py_CLEAR(self->slot);
	Py_TYPE(obj)->tp_free(obj);
}

static int sv_getbuffer(PyObject *obj, Py_buffer *view, int flags)
{
	SlotView *self = (SlotView *)obj;

	if (self->slot->addr == NULL) {
		PyErr_SetString(PyExc_ValueError, "shmchan: the channel of this slot is closed");
		view->obj = NULL;
		return -1;
	}
	return PyBuffer_FillInfo(view, obj, self->slot->addr, self->len, self->slot->readonly, flags);
}

static PyBufferProcs sv_as_buffer = {sv_getbuffer, NULL};

static PyTypeObject SlotViewType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._lease.SlotView",
	.tp_basicsize = sizeof(SlotView),
	.tp_dealloc = sv_dealloc,
	.tp_as_buffer = &sv_as_buffer,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "One view of a slot; while it lives, the slot is pinned",
};

static PyObject *sb_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"owner", "address", "size", "readonly", NULL};
	PyObject *owner;
	unsigned long long address;
	Py_ssize_t size;
	int readonly;
	SlotBuffer *self;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "OKnp", kwlist, &owner, &address, &size, &readonly))
		return NULL;
	if (address == 0 || size < 0) {
		PyErr_SetString(PyExc_ValueError, "SlotBuffer needs a non-null address and a size >= 0");
		return NULL;
	}
	self = (SlotBuffer *)type->tp_alloc(type, 0);
	if (!self)
		return NULL;
	Py_INCREF(owner);
	self->owner = owner;
	self->addr = (char *)(uintptr_t)address;
	self->size = size;
	self->views = 0;
	self->readonly = readonly;
	return (PyObject *)self;
}

static void sb_dealloc(PyObject *obj)
{
	SlotBuffer *self = (SlotBuffer *)obj;

	Py_CLEAR(self->owner);
	Py_TYPE(obj)->tp_free(obj);
}

/* view(nbytes) -> memoryview of the first nbytes; pins the slot while it, or anything made from
   it, lives */
static PyObject *sb_view(PyObject *obj, PyObject *arg)
{
	SlotBuffer *self = (SlotBuffer *)obj;
	Py_ssize_t n = PyLong_AsSsize_t(arg);
	SlotView *v;
	PyObject *mv;

	if (n == -1 && PyErr_Occurred())
		return NULL;
	if (n < 0 || n > self->size) {
		PyErr_Format(PyExc_ValueError, "shmchan: view of %zd bytes in a slot of %zd", n, self->size);
		return NULL;
	}
	if (self->addr == NULL) {
		PyErr_SetString(PyExc_ValueError, "shmchan: the channel of this slot is closed");
		return NULL;
	}
	v = PyObject_New(SlotView, &SlotViewType);
	if (!v)
		return NULL;
	Py_INCREF(self);
	v->slot = self;
	v->len = n;
	self->views++;
	mv = PyMemoryView_FromObject((PyObject *)v);
	Py_DECREF(v); /* from here on, only the memoryview and what is made from it hold it */
	return mv;
}

/* invalidate() -> forget the address (the channel is being closed); BufferError while views live */
static PyObject *sb_invalidate(PyObject *obj, PyObject *unused)
{
	SlotBuffer *self = (SlotBuffer *)obj;

	(void)unused;
	if (self->views > 0) {
		PyErr_Format(PyExc_BufferError, "shmchan: %zd views of this slot are still alive", self->views);
		return NULL;
	}
	self->addr = NULL;
	Py_RETURN_NONE;
}

static PyObject *sb_get_exports(PyObject *obj, void *closure)
{
	(void)closure;
	return PyLong_FromSsize_t(((SlotBuffer *)obj)->views);
}

static PyObject *sb_get_size(PyObject *obj, void *closure)
{
	(void)closure;
	return PyLong_FromSsize_t(((SlotBuffer *)obj)->size);
}

static PyObject *sb_get_readonly(PyObject *obj, void *closure)
{
	(void)closure;
	return PyBool_FromLong(((SlotBuffer *)obj)->readonly);
}

static PyMethodDef sb_methods[] = {
	{"view", sb_view, METH_O, "view(nbytes) -> memoryview of the first nbytes of the slot"},
	{"invalidate", sb_invalidate, METH_NOARGS, "forget the slot's address; BufferError while views live"},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef sb_getset[] = {
	{"exports", sb_get_exports, NULL, "number of live views (each pins the slot)", NULL},
	{"size", sb_get_size, NULL, "slot capacity in bytes", NULL},
	{"readonly", sb_get_readonly, NULL, "whether views are read-only", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SlotBufferType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmchan._lease.SlotBuffer",
	.tp_basicsize = sizeof(SlotBuffer),
	.tp_dealloc = sb_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "SlotBuffer(owner, address, size, readonly): one slot; counts the live views made from it",
	.tp_methods = sb_methods,
	.tp_getset = sb_getset,
	.tp_new = sb_new,
};

static struct PyModuleDef lease_module = {
	PyModuleDef_HEAD_INIT, "shmchan._lease", "Slots whose views are counted leases.", -1, NULL,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__lease(void)
{
	PyObject *m;

	if (PyType_Ready(&SlotBufferType) < 0 || PyType_Ready(&SlotViewType) < 0)
		return NULL;
	m = PyModule_Create(&lease_module);
	if (!m)
		return NULL;
	Py_INCREF(&SlotBufferType);
	if (PyModule_AddObject(m, "SlotBuffer", (PyObject *)&SlotBufferType) < 0) {
		Py_DECREF(&SlotBufferType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
