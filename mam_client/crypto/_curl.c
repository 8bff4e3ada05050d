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

/*
 * The search evaluates many candidate nonces per transform with bitslicing, like transform_sliced, but with its
 * own loop: a "word" is a GCC/Clang vector of two uint64 (128 lanes; SSE2 on x86-64 and NEON on 64-bit ARM,
 * both baseline, so no -march flag and no per-CPU build), the state ping-pongs between two buffers instead of
 * being copied each round, and the permutation index is computed incrementally. This roughly doubles the
 * hashes per second of a 64-lane uint64 loop on the same core. Other compilers get the 64-lane uint64 form.
 */
#if defined(__GNUC__) || defined(__clang__)
typedef uint64_t pw_t __attribute__((vector_size(16)));
#define PW_WORDS 2
#else
typedef uint64_t pw_t;
#define PW_WORDS 1
#endif
#define PW_LANES (64 * PW_WORDS)

static inline pw_t pw_all(int set) {
    pw_t v;
    memset(&v, set ? 0xFF : 0, sizeof v);
    return v;
}

static inline uint64_t pw_word(pw_t v, int w) {
#if PW_WORDS > 1
    return v[w];
#else
    (void)w;
    return v;
#endif
}

static inline void pw_set(pw_t *lo, pw_t *hi, int pos, int lane, int8_t t) {
    uint64_t l[PW_WORDS], h[PW_WORDS];
    memcpy(l, &lo[pos], sizeof l);
    memcpy(h, &hi[pos], sizeof h);
    uint64_t bit = (uint64_t)1 << (lane % 64);
    int w = lane / 64;
    if (t < 0) { l[w] |= bit; h[w] &= ~bit; }
    else if (t > 0) { l[w] &= ~bit; h[w] |= bit; }
    else { l[w] |= bit; h[w] |= bit; }
    memcpy(&lo[pos], l, sizeof l);
    memcpy(&hi[pos], h, sizeof h);
}

static inline int8_t pw_get(const pw_t *lo, const pw_t *hi, int pos, int lane) {
    int w = lane / 64, b = lane % 64;
    int l = (int)((pw_word(lo[pos], w) >> b) & 1), h = (int)((pw_word(hi[pos], w) >> b) & 1);
    return (int8_t)(l && h ? 0 : (h ? 1 : -1));
}

/*
 * 81 rounds from (lo, hi), using (tlo, thi) as the second buffer; returns which buffer holds the result
 * (0 = lo/hi, 1 = tlo/thi). The last round only computes the hash trits [243 - mwm, 243) that are checked.
 */
static int pow_transform(pw_t *lo, pw_t *hi, pw_t *tlo, pw_t *thi, int mwm) {
    pw_t *sl = lo, *sh = hi, *dl = tlo, *dh = thi;
    for (int r = 0; r < 81; r++) {
        int first = 0, last = STATE;
        if (r == 80) { first = RATE - mwm; last = RATE; }
        int j = IDX[first];
        for (int i = first; i < last; i++) {
            pw_t alpha = sl[j], beta = sh[j];
            j = j < 365 ? j + 364 : j - 365;
            pw_t gamma = sh[j];
            pw_t delta = (alpha | ~gamma) & (sl[j] ^ beta);
            dl[i] = ~delta;
            dh[i] = (alpha ^ gamma) | delta;
        }
        pw_t *t;
        t = sl; sl = dl; dl = t;
        t = sh; sh = dh; dh = t;
    }
    return sl == lo ? 0 : 1;
}

typedef struct {
    int8_t mid[STATE];   /* scalar state after absorbing all but the last block */
    int8_t last[RATE];   /* last block; nonce trits are 162..243 */
    int mwm;
    int thread_id;
    volatile int *stop;  /* set by the first thread that finds a nonce */
    volatile const char *cancel; /* caller's flag (interruptAttachingToTangle), may be NULL */
    pthread_mutex_t *lock;
    int8_t *result;
    long long tried;
} pow_job;

/*
 * Nonce layout per candidate: lanes fix trits 162..166 (5 trits: 243 >= 128 lanes), the thread id fixes
 * 167..170 (4 trits: up to 81 threads), a counter runs in 216..243; the other nonce trits keep the caller's value.
 * Every (thread, counter, lane) triple is a distinct nonce, so threads never repeat each other's work.
 */
static void *pow_worker(void *arg) {
    pow_job *job = (pow_job *)arg;
    pw_t blo[STATE], bhi[STATE], lo[STATE], hi[STATE], tlo[STATE], thi[STATE];
    int8_t block[RATE];
    memcpy(block, job->last, RATE);
    int t = job->thread_id;
    for (int p = 167; p < 171; p++) { block[p] = DIGIT[t % 3]; t /= 3; }
    for (int i = 0; i < STATE; i++) {
        int8_t v = i < RATE ? block[i] : job->mid[i];
        blo[i] = pw_all(v <= 0);
        bhi[i] = pw_all(v >= 0);
    }
    for (int lane = 0; lane < PW_LANES; lane++) {
        int b = lane;
        for (int p = 162; p < 167; p++) { pw_set(blo, bhi, p, lane, DIGIT[b % 3]); b /= 3; }
    }
    while (!*job->stop && !(job->cancel && *job->cancel)) {
        ternary_increment(block + 216, 27);
        for (int i = 216; i < RATE; i++) { blo[i] = pw_all(block[i] <= 0); bhi[i] = pw_all(block[i] >= 0); }
        memcpy(lo, blo, sizeof lo);
        memcpy(hi, bhi, sizeof hi);
        int in_t = pow_transform(lo, hi, tlo, thi, job->mwm);
        const pw_t *rl = in_t ? tlo : lo, *rh = in_t ? thi : hi;
        job->tried += PW_LANES;
        /* a hash trit is zero where lo and hi are both set: need the last mwm trits of the hash zero */
        pw_t ok = pw_all(1);
        for (int i = RATE - job->mwm; i < RATE; i++) ok &= rl[i] & rh[i];
        int lane = -1;
        for (int w = 0; w < PW_WORDS && lane < 0; w++) {
            uint64_t bits = pw_word(ok, w);
            if (bits) { int b = 0; while (!((bits >> b) & 1)) b++; lane = 64 * w + b; }
        }
        if (lane >= 0) {
            pthread_mutex_lock(job->lock);
            if (!*job->stop) {
                *job->stop = 1;
                for (int i = 0; i < 81; i++) job->result[i] = pw_get(blo, bhi, 162 + i, lane);
            }
            pthread_mutex_unlock(job->lock);
        }
    }
    return NULL;
}

/*
 * pow_search(tx: 8019 trits, mwm, threads, cancel=None) -> (nonce: 81 trits | None, hashes tried)
 * `cancel` is an optional writable buffer (a bytearray); when another thread sets its first byte to non-zero
 * the search stops and the nonce is None. The GIL is released for the whole search.
 */
static PyObject *py_pow_search(PyObject *self, PyObject *args) {
    Py_buffer tx, cancel;
    int mwm, nthreads;
    PyObject *cancel_obj = Py_None;
    if (!PyArg_ParseTuple(args, "y*ii|O", &tx, &mwm, &nthreads, &cancel_obj)) return NULL;
    int have_cancel = 0;
    if (cancel_obj != Py_None) {
        if (PyObject_GetBuffer(cancel_obj, &cancel, PyBUF_WRITABLE) < 0) { PyBuffer_Release(&tx); return NULL; }
        have_cancel = 1;
        if (cancel.len < 1) {
            PyErr_SetString(PyExc_ValueError, "cancel flag must be a writable buffer of at least one byte");
            goto fail;
        }
    }
    if (tx.len != TX_TRITS || mwm < 0 || mwm > RATE || nthreads < 1 || nthreads > 64) {
        PyErr_SetString(PyExc_ValueError, "need 8019 trits, 0 <= mwm <= 243 and 1..64 threads");
        goto fail;
    }
    const int8_t *trits = (const int8_t *)tx.buf;
    for (Py_ssize_t i = 0; i < TX_TRITS; i++) {
        if (trits[i] < -1 || trits[i] > 1) { PyErr_SetString(PyExc_ValueError, "trit outside -1..1"); goto fail; }
    }
    PyObject *res = NULL;
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
    long long tried = 0;
    int started = 1;
    if (!jobs || !tids) { PyErr_NoMemory(); goto out; }
    Py_BEGIN_ALLOW_THREADS
    for (int k = 0; k < nthreads; k++) {
        pow_job *j = &jobs[k];
        memcpy(j->mid, state, STATE);
        memcpy(j->last, trits + TX_TRITS - RATE, RATE);
        j->mwm = mwm; j->thread_id = k;
        j->stop = &stop; j->cancel = have_cancel ? (volatile const char *)cancel.buf : NULL;
        j->lock = &lock; j->result = result; j->tried = 0;
    }
    for (int k = 1; k < nthreads; k++) {
        if (pthread_create(&tids[k], NULL, pow_worker, &jobs[k]) != 0) break; /* fewer threads: still correct */
        started++;
    }
    pow_worker(&jobs[0]);
    for (int k = 1; k < started; k++) pthread_join(tids[k], NULL);
    for (int k = 0; k < started; k++) tried += jobs[k].tried;
    Py_END_ALLOW_THREADS
    if (stop) res = Py_BuildValue("(y#L)", (const char *)result, (Py_ssize_t)81, tried);
    else res = Py_BuildValue("(OL)", Py_None, tried);
out:
    free(jobs);
    free(tids);
    if (have_cancel) PyBuffer_Release(&cancel);
    PyBuffer_Release(&tx);
    return res;
fail:
    if (have_cancel) PyBuffer_Release(&cancel);
    PyBuffer_Release(&tx);
    return NULL;
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
    {"pow_search", py_pow_search, METH_VARARGS, "pow_search(tx8019, mwm, threads, cancel=None) -> (nonce81 | None, tried)"},
    {"trits_from_trytes", py_trits_from_trytes, METH_VARARGS, "trits_from_trytes(str) -> bytes"},
    {"trytes_from_trits", py_trytes_from_trits, METH_VARARGS, "trytes_from_trits(bytes) -> str"},
    {"trits_add", py_trits_add, METH_VARARGS, "trits_add(a, b, sign) -> bytes"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_curl", "Curl-P primitives (see curl.py)", -1, methods};

PyMODINIT_FUNC PyInit__curl(void) {
    init_index();
    return PyModule_Create(&moddef);
}
