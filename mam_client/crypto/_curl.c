/*
 * Curl-P sponge primitives for SCB, the only compiled code in the project.
 *
 * Why C: MAM v0 spends thousands of Curl-P-27 transforms per message and the legacy tangle needs Curl-P-81
 * proof of work. Pure Python takes ~1.4 ms per transform (SPEC §10); this file brings one transform to tens
 * of microseconds and evaluates 64 independent sponges at once with bitslicing (two uint64 planes per trit),
 * which is how independent hash chains (key segments, signature chains) and nonce searches are computed.
 * Portable C99 + pthreads: the same code runs on x86-64 and 64-bit ARM (no intrinsics, no prebuilt library).
 *
 * Trit strings cross the boundary as bytes objects of signed int8 values (-1 = 0xFF, 0, 1).
 * The pure-Python side (mam_client.crypto.curl) validates inputs; these functions still check lengths.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>

#define STATE 729
#define RATE 243

/* new[i] = F(s[p(i)], s[p(i+1)]), p(k) = 364k mod 729; F(a,b) = TABLE[a + 4b + 5] */
static const int8_t TRUTH[11] = {1, 0, -1, 2, 1, -1, 0, 2, -1, 1, 0};
static int IDX[STATE + 1];

static void init_index(void) {
    for (int k = 0; k <= STATE; k++) IDX[k] = (int)(((long)364 * k) % STATE);
}

static void transform_scalar(int8_t *s, int rounds) {
    int8_t tmp[STATE];
    for (int r = 0; r < rounds; r++) {
        memcpy(tmp, s, STATE);
        for (int i = 0; i < STATE; i++) s[i] = TRUTH[tmp[IDX[i]] + 4 * tmp[IDX[i + 1]] + 5];
    }
}

/* Bitsliced: trit -1 -> (lo=1,hi=0), 0 -> (1,1), +1 -> (0,1). Bit k of every word is lane k. */
static void transform_sliced(uint64_t *lo, uint64_t *hi, int rounds) {
    uint64_t tl[STATE], th[STATE];
    for (int r = 0; r < rounds; r++) {
        memcpy(tl, lo, sizeof tl);
        memcpy(th, hi, sizeof th);
        for (int i = 0; i < STATE; i++) {
            uint64_t alpha = tl[IDX[i]], beta = th[IDX[i]];
            uint64_t gamma = th[IDX[i + 1]];
            uint64_t delta = (alpha | ~gamma) & (tl[IDX[i + 1]] ^ beta);
            lo[i] = ~delta;
            hi[i] = (alpha ^ gamma) | delta;
        }
    }
}

static inline void slice_set(uint64_t *lo, uint64_t *hi, int pos, int lane, int8_t t) {
    uint64_t bit = (uint64_t)1 << lane;
    if (t < 0) { lo[pos] |= bit; hi[pos] &= ~bit; }
    else if (t > 0) { lo[pos] &= ~bit; hi[pos] |= bit; }
    else { lo[pos] |= bit; hi[pos] |= bit; }
}

static inline int8_t slice_get(const uint64_t *lo, const uint64_t *hi, int pos, int lane) {
    int l = (int)((lo[pos] >> lane) & 1), h = (int)((hi[pos] >> lane) & 1);
    return (int8_t)(l && h ? 0 : (h ? 1 : -1));
}

static int check_rounds(int rounds) {
    if (rounds != 27 && rounds != 81) {
        PyErr_SetString(PyExc_ValueError, "rounds must be 27 or 81");
        return 0;
    }
    return 1;
}

/* transform(state: bytearray of 729 trits, rounds) -> None, in place */
static PyObject *py_transform(PyObject *self, PyObject *args) {
    Py_buffer buf;
    int rounds;
    if (!PyArg_ParseTuple(args, "w*i", &buf, &rounds)) return NULL;
    if (buf.len != STATE || !check_rounds(rounds)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "state must be 729 trits");
        PyBuffer_Release(&buf);
        return NULL;
    }
    transform_scalar((int8_t *)buf.buf, rounds);
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
}

/*
 * hash_chains(blocks: n*243 trits, steps: bytes of n step counts (0..255), rounds) -> bytes (n*243)
 * Lane i becomes H^steps[i](block_i), where H(x) = rate after one transform of a fresh sponge that absorbed x.
 */
static PyObject *py_hash_chains(PyObject *self, PyObject *args) {
    Py_buffer blocks, steps;
    int rounds;
    if (!PyArg_ParseTuple(args, "y*y*i", &blocks, &steps, &rounds)) return NULL;
    PyObject *out = NULL;
    if (!check_rounds(rounds)) goto done;
    if (blocks.len % RATE != 0 || blocks.len / RATE != steps.len) {
        PyErr_SetString(PyExc_ValueError, "need one step count per 243-trit block");
        goto done;
    }
    Py_ssize_t n = steps.len;
    out = PyBytes_FromStringAndSize(NULL, n * RATE);
    if (!out) goto done;
    const int8_t *in = (const int8_t *)blocks.buf;
    const uint8_t *st = (const uint8_t *)steps.buf;
    int8_t *res = (int8_t *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    uint64_t lo[STATE], hi[STATE];
    for (Py_ssize_t base = 0; base < n; base += 64) {
        int lanes = (int)((n - base) < 64 ? (n - base) : 64);
        int maxsteps = 0;
        for (int k = 0; k < lanes; k++) if (st[base + k] > maxsteps) maxsteps = st[base + k];
        /* current values live in res; start from the input blocks */
        memcpy(res + base * RATE, in + base * RATE, (size_t)lanes * RATE);
        for (int step = 0; step < maxsteps; step++) {
            for (int i = 0; i < STATE; i++) { lo[i] = ~(uint64_t)0; hi[i] = ~(uint64_t)0; }
            for (int k = 0; k < lanes; k++) {
                const int8_t *b = res + (base + k) * RATE;
                for (int i = 0; i < RATE; i++) slice_set(lo, hi, i, k, b[i]);
            }
            transform_sliced(lo, hi, rounds);
            for (int k = 0; k < lanes; k++) {
                if (step >= st[base + k]) continue; /* this chain is done: keep its value */
                int8_t *b = res + (base + k) * RATE;
                for (int i = 0; i < RATE; i++) b[i] = slice_get(lo, hi, i, k);
            }
        }
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&blocks);
    PyBuffer_Release(&steps);
    return out;
}

static void ternary_increment(int8_t *t, int len) {
    for (int i = 0; i < len; i++) {
        if (t[i] == 1) { t[i] = -1; } else { t[i]++; return; }
    }
}

static const int8_t DIGIT[3] = {0, 1, -1};

/*
 * mam_nonce(state: 729 trits, security, rounds) -> (nonce: 81 trits, batches)
 * The deterministic 64-lane search of mam.js (SPEC §6.4): counter = state[54..81) incremented before each batch;
 * lane b fixes nonce trits 0..3; a batch whose first passing lane is lane 0 is discarded.
 */
static PyObject *py_mam_nonce(PyObject *self, PyObject *args) {
    Py_buffer sbuf;
    int security, rounds;
    if (!PyArg_ParseTuple(args, "y*ii", &sbuf, &security, &rounds)) return NULL;
    PyObject *res = NULL;
    if (sbuf.len != STATE || security < 1 || security > 3 || !check_rounds(rounds)) {
        PyErr_SetString(PyExc_ValueError, "need a 729-trit state and security 1..3");
        goto done;
    }
    int8_t base[STATE], nonce[81];
    memcpy(base, sbuf.buf, STATE);
    int found = -1;
    long batches = 0;
    Py_BEGIN_ALLOW_THREADS
    uint64_t lo[STATE], hi[STATE];
    while (found < 0 && batches < 100000000L) {
        batches++;
        ternary_increment(base + 54, 27);
        for (int i = 0; i < STATE; i++) { lo[i] = 0; hi[i] = 0; }
        for (int lane = 0; lane < 64; lane++) {
            for (int i = 0; i < STATE; i++) slice_set(lo, hi, i, lane, base[i]);
            int b = lane;
            for (int p = 0; p < 4; p++) { slice_set(lo, hi, p, lane, DIGIT[b % 3]); b /= 3; }
        }
        transform_sliced(lo, hi, rounds);
        int first = -1;
        for (int lane = 0; lane < 64 && first < 0; lane++) {
            int ok = 1, sum = 0;
            for (int j = 0; j < security && ok; j++) {
                for (int i = 81 * j; i < 81 * (j + 1); i++) sum += slice_get(lo, hi, i, lane);
                if (j < security - 1 && sum == 0) ok = 0;
                if (j == security - 1 && sum != 0) ok = 0;
            }
            if (ok) first = lane;
        }
        if (first > 0) {
            found = first;
            memcpy(nonce, base, 81);
            int b = first;
            for (int p = 0; p < 4; p++) { nonce[p] = DIGIT[b % 3]; b /= 3; }
        }
    }
    Py_END_ALLOW_THREADS
    if (found < 0) {
        PyErr_SetString(PyExc_RuntimeError, "nonce search exhausted");
        goto done;
    }
    res = Py_BuildValue("(y#l)", (const char *)nonce, (Py_ssize_t)81, batches);
done:
    PyBuffer_Release(&sbuf);
    return res;
}

/* ---- Curl-P-81 proof of work over a 2673-tryte transaction (nonce = last 81 trits) ---- */

#define TX_TRITS 8019

typedef struct {
    uint64_t mid_lo[STATE], mid_hi[STATE]; /* state after absorbing all but the last block, all lanes equal */
    int8_t last[RATE];                     /* last block, nonce trits (162..243) to be searched */
    int mwm;
    int thread_id, nthreads;
    volatile int *stop;
    pthread_mutex_t *lock;
    int8_t *result;
    long tried;
} pow_job;

static void *pow_worker(void *arg) {
    pow_job *job = (pow_job *)arg;
    uint64_t lo[STATE], hi[STATE], blo[STATE], bhi[STATE];
    int8_t block[RATE];
    memcpy(block, job->last, RATE);
    /* lanes fix nonce trits 162..165; the thread id fixes trit 166..; the counter lives in trits 216..243 */
    int t = job->thread_id;
    for (int p = 166; p < 170; p++) { block[p] = DIGIT[t % 3]; t /= 3; }
    memcpy(blo, job->mid_lo, sizeof blo);
    memcpy(bhi, job->mid_hi, sizeof bhi);
    for (int lane = 0; lane < 64; lane++) {
        for (int i = 0; i < RATE; i++) slice_set(blo, bhi, i, lane, block[i]);
        int b = lane;
        for (int p = 162; p < 166; p++) { slice_set(blo, bhi, p, lane, DIGIT[b % 3]); b /= 3; }
    }
    while (!*job->stop) {
        ternary_increment(block + 216, 27);
        for (int i = 216; i < RATE; i++)
            for (int lane = 0; lane < 64; lane++) slice_set(blo, bhi, i, lane, block[i]);
        memcpy(lo, blo, sizeof lo);
        memcpy(hi, bhi, sizeof hi);
        transform_sliced(lo, hi, 81);
        job->tried += 64;
        /* hash trit is zero where lo & hi are both set: need the last mwm trits of the hash zero */
        uint64_t ok = ~(uint64_t)0;
        for (int i = RATE - job->mwm; i < RATE && ok; i++) ok &= lo[i] & hi[i];
        if (ok) {
            int lane = 0;
            while (!((ok >> lane) & 1)) lane++;
            pthread_mutex_lock(job->lock);
            if (!*job->stop) {
                *job->stop = 1;
                for (int i = 0; i < 81; i++) job->result[i] = slice_get(blo, bhi, 162 + i, lane);
            }
            pthread_mutex_unlock(job->lock);
        }
    }
    return NULL;
}

/* pow_search(tx: 8019 trits, mwm, threads) -> (nonce: 81 trits, hashes tried) */
static PyObject *py_pow_search(PyObject *self, PyObject *args) {
    Py_buffer tx;
    int mwm, nthreads;
    if (!PyArg_ParseTuple(args, "y*ii", &tx, &mwm, &nthreads)) return NULL;
    PyObject *res = NULL;
    if (tx.len != TX_TRITS || mwm < 0 || mwm > 243 || nthreads < 1 || nthreads > 64) {
        PyErr_SetString(PyExc_ValueError, "need 8019 trits, 0 <= mwm <= 243 and 1..64 threads");
        PyBuffer_Release(&tx);
        return NULL;
    }
    const int8_t *trits = (const int8_t *)tx.buf;
    int8_t state[STATE];
    memset(state, 0, sizeof state);
    for (int off = 0; off < TX_TRITS - RATE; off += RATE) {
        memcpy(state, trits + off, RATE);
        transform_scalar(state, 81);
    }
    pow_job *jobs = calloc((size_t)nthreads, sizeof(pow_job));
    pthread_t *tids = calloc((size_t)nthreads, sizeof(pthread_t));
    volatile int stop = 0;
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    int8_t result[81];
    long tried = 0;
    if (!jobs || !tids) { PyErr_NoMemory(); goto out; }
    Py_BEGIN_ALLOW_THREADS
    for (int k = 0; k < nthreads; k++) {
        pow_job *j = &jobs[k];
        for (int i = 0; i < STATE; i++) { j->mid_lo[i] = 0; j->mid_hi[i] = 0; }
        for (int lane = 0; lane < 64; lane++)
            for (int i = RATE; i < STATE; i++) slice_set(j->mid_lo, j->mid_hi, i, lane, state[i]);
        memcpy(j->last, trits + TX_TRITS - RATE, RATE);
        j->mwm = mwm; j->thread_id = k; j->nthreads = nthreads;
        j->stop = &stop; j->lock = &lock; j->result = result; j->tried = 0;
    }
    for (int k = 1; k < nthreads; k++) pthread_create(&tids[k], NULL, pow_worker, &jobs[k]);
    pow_worker(&jobs[0]);
    for (int k = 1; k < nthreads; k++) pthread_join(tids[k], NULL);
    for (int k = 0; k < nthreads; k++) tried += jobs[k].tried;
    Py_END_ALLOW_THREADS
    res = Py_BuildValue("(y#l)", (const char *)result, (Py_ssize_t)81, tried);
out:
    free(jobs);
    free(tids);
    PyBuffer_Release(&tx);
    return res;
}


/* ---- trit/tryte helpers (the hot conversions of the codec) ---- */

static const char ALPHABET[] = "9ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/* trits_from_trytes(str) -> bytes (3 trits per tryte); ValueError on a character outside [9A-Z] */
static PyObject *py_trits_from_trytes(PyObject *self, PyObject *args) {
    const char *s;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "s#", &s, &n)) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, 3 * n);
    if (!out) return NULL;
    int8_t *t = (int8_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        int v;
        if (c == '9') v = 0;
        else if (c >= 'A' && c <= 'M') v = c - 'A' + 1;
        else if (c >= 'N' && c <= 'Z') v = c - 'N' - 13;
        else {
            Py_DECREF(out);
            PyErr_Format(PyExc_ValueError, "not a tryte at position %zd", i);
            return NULL;
        }
        for (int k = 0; k < 3; k++) {
            int r = ((v % 3) + 3) % 3;
            int d = r == 2 ? -1 : r;
            t[3 * i + k] = (int8_t)d;
            v = (v - d) / 3;
        }
    }
    return out;
}

/* trytes_from_trits(bytes) -> str; the length must be a multiple of 3 and every value in -1..1 */
static PyObject *py_trytes_from_trits(PyObject *self, PyObject *args) {
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "y*", &b)) return NULL;
    if (b.len % 3 != 0) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "trit count must be a multiple of 3");
        return NULL;
    }
    Py_ssize_t n = b.len / 3;
    PyObject *out = PyUnicode_New(n, 127);
    if (!out) { PyBuffer_Release(&b); return NULL; }
    const int8_t *t = (const int8_t *)b.buf;
    Py_UCS1 *o = PyUnicode_1BYTE_DATA(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        int a = t[3 * i], c = t[3 * i + 1], d = t[3 * i + 2];
        if (a < -1 || a > 1 || c < -1 || c > 1 || d < -1 || d > 1) {
            Py_DECREF(out);
            PyBuffer_Release(&b);
            PyErr_SetString(PyExc_ValueError, "trit outside -1..1");
            return NULL;
        }
        int v = a + 3 * c + 9 * d;
        o[i] = (Py_UCS1)ALPHABET[v < 0 ? v + 27 : v];
    }
    PyBuffer_Release(&b);
    return out;
}

/* trits_add(a, b, sign) -> bytes: balanced a (+) sign*b per trit, over min(len a, len b) trits */
static PyObject *py_trits_add(PyObject *self, PyObject *args) {
    Py_buffer a, b;
    int sign;
    if (!PyArg_ParseTuple(args, "y*y*i", &a, &b, &sign)) return NULL;
    Py_ssize_t n = a.len < b.len ? a.len : b.len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out) {
        const int8_t *x = (const int8_t *)a.buf, *y = (const int8_t *)b.buf;
        int8_t *o = (int8_t *)PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < n; i++) {
            int v = x[i] + (sign < 0 ? -y[i] : y[i]);
            o[i] = (int8_t)(v > 1 ? v - 3 : (v < -1 ? v + 3 : v));
        }
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return out;
}

static PyMethodDef methods[] = {
    {"transform", py_transform, METH_VARARGS, "transform(state: bytearray[729], rounds) in place"},
    {"hash_chains", py_hash_chains, METH_VARARGS, "hash_chains(blocks, steps, rounds) -> bytes"},
    {"mam_nonce", py_mam_nonce, METH_VARARGS, "mam_nonce(state729, security, rounds) -> (nonce81, batches)"},
    {"pow_search", py_pow_search, METH_VARARGS, "pow_search(tx8019, mwm, threads) -> (nonce81, tried)"},
    {"trits_from_trytes", py_trits_from_trytes, METH_VARARGS, "trits_from_trytes(str) -> bytes"},
    {"trytes_from_trits", py_trytes_from_trits, METH_VARARGS, "trytes_from_trits(bytes) -> str"},
    {"trits_add", py_trits_add, METH_VARARGS, "trits_add(a, b, sign) -> bytes"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_curl", "Curl-P primitives (see curl.py)", -1, methods};

PyMODINIT_FUNC PyInit__curl(void) {
    init_index();
    return PyModule_Create(&moddef);
}
