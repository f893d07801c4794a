/* The nonce search of docs/protocol.md section 3 in C: the same answer as
 * cheesecoin.core.pow.search_nonce (its pure-Python reference), faster.
 *
 *   search(prefix: bytes, bits: int, first: int, last: int, portable: bool = False)
 *       -> the first nonce n in [first, last] (inclusive) whose smell
 *          SHA1(prefix + decimal(n)) starts with bits zero bits, or None.
 *   backend() -> "sha-ni" or "portable": what search uses on this CPU.
 *
 * The 64-byte blocks of the prefix are compressed once (the midstate); each
 * nonce then costs one compression of the last block (a second one only when
 * a carry changes the block before it). The decimal digits are incremented
 * in place. On x86 CPUs with the SHA extensions (detected at run time) the
 * compression uses them; elsewhere a portable C compression. The GIL is
 * released during the search: callers search in batches (the stop latency).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86 1
#endif

typedef void (*compress_fn)(uint32_t state[5], const uint8_t block[64]);

static inline uint32_t rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

/* The portable compression: 80 rounds unrolled over a 16-word rolling schedule. */
#define W(i) (w[(i) & 15] = rotl(w[((i) + 13) & 15] ^ w[((i) + 8) & 15] ^ w[((i) + 2) & 15] ^ w[(i) & 15], 1))
#define R(a, b, c, d, e, f, k, x) do { e += rotl(a, 5) + (f) + (k) + (x); b = rotl(b, 30); } while (0)
#define F1(b, c, d) (d ^ (b & (c ^ d)))
#define F2(b, c, d) (b ^ c ^ d)
#define F3(b, c, d) ((b & c) | (d & (b | c)))
#define R5(f, k, x0, x1, x2, x3, x4) do { \
        R(a, b, c, d, e, f(b, c, d), k, x0); R(e, a, b, c, d, f(a, b, c), k, x1); \
        R(d, e, a, b, c, f(e, a, b), k, x2); R(c, d, e, a, b, f(d, e, a), k, x3); \
        R(b, c, d, e, a, f(c, d, e), k, x4); } while (0)

static void compress_portable(uint32_t state[5], const uint8_t block[64])
{
    uint32_t w[16];
    for (int i = 0; i < 16; i++)
        w[i] = ((uint32_t)block[4 * i] << 24) | ((uint32_t)block[4 * i + 1] << 16) |
               ((uint32_t)block[4 * i + 2] << 8) | (uint32_t)block[4 * i + 3];
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
    R5(F1, 0x5A827999u, w[0], w[1], w[2], w[3], w[4]);
    R5(F1, 0x5A827999u, w[5], w[6], w[7], w[8], w[9]);
    R5(F1, 0x5A827999u, w[10], w[11], w[12], w[13], w[14]);
    R5(F1, 0x5A827999u, w[15], W(16), W(17), W(18), W(19));
    R5(F2, 0x6ED9EBA1u, W(20), W(21), W(22), W(23), W(24));
    R5(F2, 0x6ED9EBA1u, W(25), W(26), W(27), W(28), W(29));
    R5(F2, 0x6ED9EBA1u, W(30), W(31), W(32), W(33), W(34));
    R5(F2, 0x6ED9EBA1u, W(35), W(36), W(37), W(38), W(39));
    R5(F3, 0x8F1BBCDCu, W(40), W(41), W(42), W(43), W(44));
    R5(F3, 0x8F1BBCDCu, W(45), W(46), W(47), W(48), W(49));
    R5(F3, 0x8F1BBCDCu, W(50), W(51), W(52), W(53), W(54));
    R5(F3, 0x8F1BBCDCu, W(55), W(56), W(57), W(58), W(59));
    R5(F2, 0xCA62C1D6u, W(60), W(61), W(62), W(63), W(64));
    R5(F2, 0xCA62C1D6u, W(65), W(66), W(67), W(68), W(69));
    R5(F2, 0xCA62C1D6u, W(70), W(71), W(72), W(73), W(74));
    R5(F2, 0xCA62C1D6u, W(75), W(76), W(77), W(78), W(79));
    state[0] += a; state[1] += b; state[2] += c; state[3] += d; state[4] += e;
}

#ifdef HAVE_X86
__attribute__((target("sha,sse4.1,ssse3")))
static void compress_shani(uint32_t state[5], const uint8_t block[64])
{
    __m128i ABCD, ABCD_SAVE, E0, E0_SAVE, E1, MSG0, MSG1, MSG2, MSG3;
    const __m128i MASK = _mm_set_epi64x(0x0001020304050607ULL, 0x08090a0b0c0d0e0fULL);
    ABCD = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)state), 0x1B);
    E0 = _mm_set_epi32((int)state[4], 0, 0, 0);
    ABCD_SAVE = ABCD;
    E0_SAVE = E0;
    MSG0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 0)), MASK);
    E0 = _mm_add_epi32(E0, MSG0);
    E1 = ABCD;
    ABCD = _mm_sha1rnds4_epu32(ABCD, E0, 0);
    MSG1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 16)), MASK);
    E1 = _mm_sha1nexte_epu32(E1, MSG1);
    E0 = ABCD;
    ABCD = _mm_sha1rnds4_epu32(ABCD, E1, 0);
    MSG0 = _mm_sha1msg1_epu32(MSG0, MSG1);
    MSG2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 32)), MASK);
    E0 = _mm_sha1nexte_epu32(E0, MSG2);
    E1 = ABCD;
    ABCD = _mm_sha1rnds4_epu32(ABCD, E0, 0);
    MSG1 = _mm_sha1msg1_epu32(MSG1, MSG2);
    MSG0 = _mm_xor_si128(MSG0, MSG2);
    MSG3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 48)), MASK);
    E1 = _mm_sha1nexte_epu32(E1, MSG3);
    E0 = ABCD;
    MSG0 = _mm_sha1msg2_epu32(MSG0, MSG3);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E1, 0);
    MSG2 = _mm_sha1msg1_epu32(MSG2, MSG3);
    MSG1 = _mm_xor_si128(MSG1, MSG3);
    E0 = _mm_sha1nexte_epu32(E0, MSG0);
    E1 = ABCD;
    MSG1 = _mm_sha1msg2_epu32(MSG1, MSG0);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E0, 0);
    MSG3 = _mm_sha1msg1_epu32(MSG3, MSG0);
    MSG2 = _mm_xor_si128(MSG2, MSG0);
    E1 = _mm_sha1nexte_epu32(E1, MSG1);
    E0 = ABCD;
    MSG2 = _mm_sha1msg2_epu32(MSG2, MSG1);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E1, 1);
    MSG0 = _mm_sha1msg1_epu32(MSG0, MSG1);
    MSG3 = _mm_xor_si128(MSG3, MSG1);
    E0 = _mm_sha1nexte_epu32(E0, MSG2);
    E1 = ABCD;
    MSG3 = _mm_sha1msg2_epu32(MSG3, MSG2);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E0, 1);
    MSG1 = _mm_sha1msg1_epu32(MSG1, MSG2);
    MSG0 = _mm_xor_si128(MSG0, MSG2);
    E1 = _mm_sha1nexte_epu32(E1, MSG3);
    E0 = ABCD;
    MSG0 = _mm_sha1msg2_epu32(MSG0, MSG3);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E1, 1);
    MSG2 = _mm_sha1msg1_epu32(MSG2, MSG3);
    MSG1 = _mm_xor_si128(MSG1, MSG3);
    E0 = _mm_sha1nexte_epu32(E0, MSG0);
    E1 = ABCD;
    MSG1 = _mm_sha1msg2_epu32(MSG1, MSG0);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E0, 1);
    MSG3 = _mm_sha1msg1_epu32(MSG3, MSG0);
    MSG2 = _mm_xor_si128(MSG2, MSG0);
    E1 = _mm_sha1nexte_epu32(E1, MSG1);
    E0 = ABCD;
    MSG2 = _mm_sha1msg2_epu32(MSG2, MSG1);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E1, 1);
    MSG0 = _mm_sha1msg1_epu32(MSG0, MSG1);
    MSG3 = _mm_xor_si128(MSG3, MSG1);
    E0 = _mm_sha1nexte_epu32(E0, MSG2);
    E1 = ABCD;
    MSG3 = _mm_sha1msg2_epu32(MSG3, MSG2);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E0, 2);
    MSG1 = _mm_sha1msg1_epu32(MSG1, MSG2);
    MSG0 = _mm_xor_si128(MSG0, MSG2);
    E1 = _mm_sha1nexte_epu32(E1, MSG3);
    E0 = ABCD;
    MSG0 = _mm_sha1msg2_epu32(MSG0, MSG3);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E1, 2);
    MSG2 = _mm_sha1msg1_epu32(MSG2, MSG3);
    MSG1 = _mm_xor_si128(MSG1, MSG3);
    E0 = _mm_sha1nexte_epu32(E0, MSG0);
    E1 = ABCD;
    MSG1 = _mm_sha1msg2_epu32(MSG1, MSG0);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E0, 2);
    MSG3 = _mm_sha1msg1_epu32(MSG3, MSG0);
    MSG2 = _mm_xor_si128(MSG2, MSG0);
    E1 = _mm_sha1nexte_epu32(E1, MSG1);
    E0 = ABCD;
    MSG2 = _mm_sha1msg2_epu32(MSG2, MSG1);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E1, 2);
    MSG0 = _mm_sha1msg1_epu32(MSG0, MSG1);
    MSG3 = _mm_xor_si128(MSG3, MSG1);
    E0 = _mm_sha1nexte_epu32(E0, MSG2);
    E1 = ABCD;
    MSG3 = _mm_sha1msg2_epu32(MSG3, MSG2);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E0, 2);
    MSG1 = _mm_sha1msg1_epu32(MSG1, MSG2);
    MSG0 = _mm_xor_si128(MSG0, MSG2);
    E1 = _mm_sha1nexte_epu32(E1, MSG3);
    E0 = ABCD;
    MSG0 = _mm_sha1msg2_epu32(MSG0, MSG3);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E1, 3);
    MSG2 = _mm_sha1msg1_epu32(MSG2, MSG3);
    MSG1 = _mm_xor_si128(MSG1, MSG3);
    E0 = _mm_sha1nexte_epu32(E0, MSG0);
    E1 = ABCD;
    MSG1 = _mm_sha1msg2_epu32(MSG1, MSG0);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E0, 3);
    MSG3 = _mm_sha1msg1_epu32(MSG3, MSG0);
    MSG2 = _mm_xor_si128(MSG2, MSG0);
    E1 = _mm_sha1nexte_epu32(E1, MSG1);
    E0 = ABCD;
    MSG2 = _mm_sha1msg2_epu32(MSG2, MSG1);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E1, 3);
    MSG3 = _mm_xor_si128(MSG3, MSG1);
    E0 = _mm_sha1nexte_epu32(E0, MSG2);
    E1 = ABCD;
    MSG3 = _mm_sha1msg2_epu32(MSG3, MSG2);
    ABCD = _mm_sha1rnds4_epu32(ABCD, E0, 3);
    E1 = _mm_sha1nexte_epu32(E1, MSG3);
    E0 = ABCD;
    ABCD = _mm_sha1rnds4_epu32(ABCD, E1, 3);
    E0 = _mm_sha1nexte_epu32(E0, E0_SAVE);
    ABCD = _mm_add_epi32(ABCD, ABCD_SAVE);
    _mm_storeu_si128((__m128i *)state, _mm_shuffle_epi32(ABCD, 0x1B));
    state[4] = (uint32_t)_mm_extract_epi32(E0, 3);
}

static int cpu_has_shani(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return ssse3 && sse41 && ((b >> 29) & 1);
}
#endif

static compress_fn best_compress = compress_portable;
static const char *best_name = "portable";

static const uint32_t SHA1_IV[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};

static int meets(const uint32_t h[5], int bits)
{
    int full = bits / 32, rest = bits % 32;
    for (int i = 0; i < full; i++)
        if (h[i] != 0)
            return 0;
    if (rest == 0)
        return 1;
    return (h[full] >> (32 - rest)) == 0;
}

static int digits_of(uint64_t n) { int d = 1; while (n >= 10) { n /= 10; d++; } return d; }

static uint64_t pow10_u64(int d) { uint64_t p = 1; while (d-- > 0) p *= 10; return p; }

/* Searches [first, last]; returns 1 and sets *found on a hit. */
static int search_range(compress_fn compress, const uint8_t *prefix, Py_ssize_t plen, int bits,
                        uint64_t first, uint64_t last, uint64_t *found)
{
    uint32_t mid[5];
    memcpy(mid, SHA1_IV, sizeof mid);
    Py_ssize_t full = plen / 64 * 64, rem = plen - full;
    for (Py_ssize_t i = 0; i < full; i += 64)
        compress(mid, prefix + i);
    uint64_t lo = first;
    for (;;) {
        int nd = digits_of(lo);
        uint64_t hi = (nd >= 20) ? UINT64_MAX : pow10_u64(nd) - 1; /* the last nonce of nd digits */
        if (hi > last)
            hi = last;
        uint8_t tail[128];
        memset(tail, 0, sizeof tail);
        memcpy(tail, prefix + full, (size_t)rem);
        uint64_t n = lo;
        for (int i = nd - 1; i >= 0; i--) { tail[rem + i] = (uint8_t)('0' + n % 10); n /= 10; }
        Py_ssize_t used = rem + nd;
        tail[used] = 0x80;
        int blocks = (used + 9 <= 64) ? 1 : 2;
        uint64_t bitlen = ((uint64_t)(plen + nd)) * 8;
        for (int i = 0; i < 8; i++)
            tail[64 * blocks - 1 - i] = (uint8_t)(bitlen >> (8 * i));
        uint32_t after_first[5], h[5];
        int dirty = 1;
        for (uint64_t nonce = lo;; nonce++) {
            if (blocks == 1) {
                memcpy(h, mid, sizeof h);
                compress(h, tail);
            } else {
                if (dirty) {
                    memcpy(after_first, mid, sizeof after_first);
                    compress(after_first, tail);
                    dirty = 0;
                }
                memcpy(h, after_first, sizeof h);
                compress(h, tail + 64);
            }
            if (meets(h, bits)) {
                *found = nonce;
                return 1;
            }
            if (nonce == hi)
                break;
            Py_ssize_t i = used - 1; /* increment the decimal digits in place */
            while (tail[i] == '9') {
                tail[i] = '0';
                if (i < 64)
                    dirty = 1;
                i--;
            }
            tail[i]++;
            if (i < 64)
                dirty = 1;
        }
        if (hi == last)
            return 0;
        lo = hi + 1;
    }
}

static PyObject *py_search(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"prefix", "bits", "first", "last", "portable", NULL};
    Py_buffer prefix;
    int bits, portable = 0;
    unsigned long long first, last;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*iKK|p", names, &prefix, &bits, &first, &last, &portable))
        return NULL;
    if (bits < 1 || bits > 160 || first > last) {
        PyBuffer_Release(&prefix);
        PyErr_SetString(PyExc_ValueError, "bits must be 1 to 160 and first <= last");
        return NULL;
    }
    compress_fn compress = portable ? compress_portable : best_compress;
    uint64_t found = 0;
    int hit;
    Py_BEGIN_ALLOW_THREADS
    hit = search_range(compress, (const uint8_t *)prefix.buf, prefix.len, bits, first, last, &found);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&prefix);
    if (!hit)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(found);
}

static PyObject *py_backend(PyObject *self, PyObject *unused) { return PyUnicode_FromString(best_name); }

static PyMethodDef methods[] = {
    {"search", (PyCFunction)(void (*)(void))py_search, METH_VARARGS | METH_KEYWORDS,
     "search(prefix, bits, first, last, portable=False) -> the first nonce in [first, last] meeting bits, or None"},
    {"backend", py_backend, METH_NOARGS, "backend() -> 'sha-ni' or 'portable'"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sha1search", "The native nonce search.", -1, methods};

PyMODINIT_FUNC PyInit__sha1search(void)
{
#ifdef HAVE_X86
    if (cpu_has_shani()) {
        best_compress = compress_shani;
        best_name = "sha-ni";
    }
#endif
    return PyModule_Create(&module);
}
