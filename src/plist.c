/* Property lists (XML format): tree, constructors, accessors, a strict
 * expat-based parser and a writer. See plist.h for the contract.
 *
 * Nothing here recurses: the parser keeps its own fixed-size element stack,
 * plist_free chains pending nodes through the nodes themselves, and the writer
 * keeps an explicit stack. Trees built with the constructors have no depth
 * limit, so relying on the parser's depth cap would not be enough.
 */
#include "plist.h"

#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <expat.h>

struct dict_entry {
    char *key;
    plist_t *value;
};

struct plist {
    plist_type_t type;
    plist_t *next_to_free; /* only used while plist_free runs */
    union {
        struct {
            struct dict_entry *entries;
            size_t len, cap;
        } dict;
        struct {
            plist_t **items;
            size_t len, cap;
        } array;
        char *string;
        struct {
            unsigned char *bytes; /* never NULL, even when len is 0 */
            size_t len;
        } data;
        int64_t integer; /* PLIST_INTEGER and PLIST_DATE */
        double real;
        int boolean;
    } u;
};

/* Dates are written as YYYY-MM-DDTHH:MM:SSZ, so only years 0000-9999 fit. */
#define DATE_MIN ((int64_t)-62167219200) /* 0000-01-01T00:00:00Z */
#define DATE_MAX ((int64_t)253402300799) /* 9999-12-31T23:59:59Z */

/* ---- growable byte buffer (parser text and writer output) ---------------- */

struct strbuf {
    char *data;
    size_t len, cap;
    int oom; /* set once an append failed; later appends are ignored */
};

static void strbuf_append(struct strbuf *sb, const char *s, size_t n)
{
    if (sb->oom)
        return;
    if (n >= sb->cap - sb->len || !sb->data) {
        size_t need = sb->len + n + 1;
        if (need < n) {
            sb->oom = 1;
            return;
        }
        size_t cap = sb->cap ? sb->cap : 256;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) {
                cap = need;
                break;
            }
            cap *= 2;
        }
        char *grown = realloc(sb->data, cap);
        if (!grown) {
            sb->oom = 1;
            return;
        }
        sb->data = grown;
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

static void strbuf_puts(struct strbuf *sb, const char *s)
{
    strbuf_append(sb, s, strlen(s));
}

static void strbuf_reset(struct strbuf *sb)
{
    sb->len = 0;
    if (sb->data)
        sb->data[0] = '\0';
}

/* ---- nodes ------------------------------------------------------------- */

static plist_t *node_new(plist_type_t type)
{
    plist_t *p = calloc(1, sizeof *p);
    if (p)
        p->type = type;
    return p;
}

/* Grows an array of `size`-byte elements so one more fits. 0 or -1. */
static int grow_for_one_more(void **items, size_t *cap, size_t len, size_t size)
{
    if (len < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    if (ncap < *cap || ncap > SIZE_MAX / size)
        return -1;
    void *grown = realloc(*items, ncap * size);
    if (!grown)
        return -1;
    *items = grown;
    *cap = ncap;
    return 0;
}

/* Appends without looking for an existing key; takes `key` and `value` only
 * on success. */
static int dict_append(plist_t *dict, char *key, plist_t *value)
{
    void *entries = dict->u.dict.entries;
    if (grow_for_one_more(&entries, &dict->u.dict.cap, dict->u.dict.len, sizeof(struct dict_entry)))
        return -1;
    dict->u.dict.entries = entries;
    dict->u.dict.entries[dict->u.dict.len++] = (struct dict_entry){key, value};
    return 0;
}

/* Takes `value` only on success. */
static int array_append(plist_t *array, plist_t *value)
{
    void *items = array->u.array.items;
    if (grow_for_one_more(&items, &array->u.array.cap, array->u.array.len, sizeof(plist_t *)))
        return -1;
    array->u.array.items = items;
    array->u.array.items[array->u.array.len++] = value;
    return 0;
}

void plist_free(plist_t *p)
{
    /* Nodes still to be freed form a list linked through next_to_free, so
     * freeing needs neither recursion nor memory. */
    plist_t *pending = p;
    if (p)
        p->next_to_free = NULL;
    while (pending) {
        plist_t *n = pending;
        pending = n->next_to_free;
        switch (n->type) {
        case PLIST_DICT:
            for (size_t i = 0; i < n->u.dict.len; i++) {
                free(n->u.dict.entries[i].key);
                n->u.dict.entries[i].value->next_to_free = pending;
                pending = n->u.dict.entries[i].value;
            }
            free(n->u.dict.entries);
            break;
        case PLIST_ARRAY:
            for (size_t i = 0; i < n->u.array.len; i++) {
                n->u.array.items[i]->next_to_free = pending;
                pending = n->u.array.items[i];
            }
            free(n->u.array.items);
            break;
        case PLIST_STRING:
            free(n->u.string);
            break;
        case PLIST_DATA:
            free(n->u.data.bytes);
            break;
        case PLIST_INTEGER:
        case PLIST_REAL:
        case PLIST_BOOL:
        case PLIST_DATE:
            break;
        }
        free(n);
    }
}

plist_type_t plist_type(const plist_t *p)
{
    return p->type;
}

const char *plist_type_name(plist_type_t t)
{
    switch (t) {
    case PLIST_DICT:
        return "dict";
    case PLIST_ARRAY:
        return "array";
    case PLIST_STRING:
        return "string";
    case PLIST_INTEGER:
        return "integer";
    case PLIST_REAL:
        return "real";
    case PLIST_BOOL:
        return "bool";
    case PLIST_DATE:
        return "date";
    case PLIST_DATA:
        return "data";
    }
    return "unknown";
}

/* ---- constructors -------------------------------------------------------- */

plist_t *plist_new_dict(void)
{
    return node_new(PLIST_DICT);
}

plist_t *plist_new_array(void)
{
    return node_new(PLIST_ARRAY);
}

plist_t *plist_new_string(const char *s)
{
    if (!s)
        return NULL;
    plist_t *p = node_new(PLIST_STRING);
    if (p && !(p->u.string = strdup(s))) {
        free(p);
        return NULL;
    }
    return p;
}

plist_t *plist_new_integer(int64_t v)
{
    plist_t *p = node_new(PLIST_INTEGER);
    if (p)
        p->u.integer = v;
    return p;
}

plist_t *plist_new_real(double v)
{
    plist_t *p = node_new(PLIST_REAL);
    if (p)
        p->u.real = v;
    return p;
}

plist_t *plist_new_bool(int v)
{
    plist_t *p = node_new(PLIST_BOOL);
    if (p)
        p->u.boolean = v != 0;
    return p;
}

plist_t *plist_new_date(int64_t unix_seconds)
{
    plist_t *p = node_new(PLIST_DATE);
    if (p)
        p->u.integer = unix_seconds;
    return p;
}

plist_t *plist_new_data(const unsigned char *d, size_t len)
{
    if (!d && len)
        return NULL;
    plist_t *p = node_new(PLIST_DATA);
    if (!p)
        return NULL;
    /* At least one byte so that plist_data() on empty data is non-NULL. */
    p->u.data.bytes = malloc(len ? len : 1);
    if (!p->u.data.bytes) {
        free(p);
        return NULL;
    }
    if (len)
        memcpy(p->u.data.bytes, d, len);
    p->u.data.len = len;
    return p;
}

/* ---- containers ---------------------------------------------------------- */

static struct dict_entry *dict_find(const plist_t *dict, const char *key)
{
    for (size_t i = 0; i < dict->u.dict.len; i++)
        if (strcmp(dict->u.dict.entries[i].key, key) == 0)
            return &dict->u.dict.entries[i];
    return NULL;
}

int plist_dict_set(plist_t *dict, const char *key, plist_t *value)
{
    if (!dict || dict->type != PLIST_DICT || !key || !value) {
        plist_free(value);
        return -1;
    }
    struct dict_entry *e = dict_find(dict, key);
    if (e) {
        plist_free(e->value);
        e->value = value;
        return 0;
    }
    char *copy = strdup(key);
    if (!copy || dict_append(dict, copy, value)) {
        free(copy);
        plist_free(value);
        return -1;
    }
    return 0;
}

plist_t *plist_dict_get(const plist_t *dict, const char *key)
{
    if (!dict || dict->type != PLIST_DICT || !key)
        return NULL;
    struct dict_entry *e = dict_find(dict, key);
    return e ? e->value : NULL;
}

size_t plist_dict_size(const plist_t *dict)
{
    return dict && dict->type == PLIST_DICT ? dict->u.dict.len : 0;
}

const char *plist_dict_key_at(const plist_t *dict, size_t i)
{
    return i < plist_dict_size(dict) ? dict->u.dict.entries[i].key : NULL;
}

plist_t *plist_dict_value_at(const plist_t *dict, size_t i)
{
    return i < plist_dict_size(dict) ? dict->u.dict.entries[i].value : NULL;
}

int plist_array_append(plist_t *array, plist_t *value)
{
    if (!array || array->type != PLIST_ARRAY || !value || array_append(array, value)) {
        plist_free(value);
        return -1;
    }
    return 0;
}

size_t plist_array_size(const plist_t *array)
{
    return array && array->type == PLIST_ARRAY ? array->u.array.len : 0;
}

plist_t *plist_array_get(const plist_t *array, size_t i)
{
    return i < plist_array_size(array) ? array->u.array.items[i] : NULL;
}

/* ---- scalar accessors ---------------------------------------------------- */

const char *plist_string(const plist_t *p)
{
    return p && p->type == PLIST_STRING ? p->u.string : NULL;
}

int64_t plist_integer(const plist_t *p)
{
    return p && p->type == PLIST_INTEGER ? p->u.integer : 0;
}

double plist_real(const plist_t *p)
{
    return p && p->type == PLIST_REAL ? p->u.real : 0.0;
}

int plist_bool(const plist_t *p)
{
    return p && p->type == PLIST_BOOL ? p->u.boolean : 0;
}

int64_t plist_date(const plist_t *p)
{
    return p && p->type == PLIST_DATE ? p->u.integer : 0;
}

const unsigned char *plist_data(const plist_t *p, size_t *len)
{
    if (!p || p->type != PLIST_DATA) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = p->u.data.len;
    return p->u.data.bytes;
}

const char *plist_dict_get_string(const plist_t *dict, const char *key)
{
    return plist_string(plist_dict_get(dict, key));
}

const unsigned char *plist_dict_get_data(const plist_t *dict, const char *key, size_t *len)
{
    return plist_data(plist_dict_get(dict, key), len);
}

/* ---- text conversions shared by parser and writer ------------------------ */

static int is_xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Strips XML whitespace from both ends in place. Surrounding whitespace is
 * tolerated in <integer>, <real> and <date> because pretty-printers
 * sometimes wrap values; inside the value it is not. */
static char *trim(char *s)
{
    while (is_xml_space(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_xml_space(s[n - 1]))
        n--;
    s[n] = '\0';
    return s;
}

/* Decimal int64 with an optional sign. Written by hand rather than with
 * strtoll, which would also accept leading whitespace and report overflow
 * only through errno. */
static int parse_int64(const char *s, int64_t *out)
{
    int negative = 0;
    if (*s == '+' || *s == '-')
        negative = *s++ == '-';
    if (!*s)
        return -1;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned digit = (unsigned)(*s - '0');
        if (v > (limit - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    if (!negative)
        *out = (int64_t)v;
    else if (v == (uint64_t)INT64_MAX + 1)
        *out = INT64_MIN;
    else
        *out = -(int64_t)v;
    return 0;
}

/* strtod, which also accepts Apple's "nan", "+infinity" and "-infinity".
 * The process runs in the "C" locale, so '.' is the decimal point. */
static int parse_real(const char *s, double *out)
{
    if (!*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || (errno == ERANGE && isinf(v)))
        return -1;
    *out = v;
    return 0;
}

static int is_leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Reads `n` decimal digits. */
static int read_digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* Exactly YYYY-MM-DDTHH:MM:SSZ, the only form Apple writes. */
static int parse_date(const char *s, int64_t *out)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (strlen(s) != sizeof shape - 1)
        return -1;
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return -1;
    }
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year = read_digits(s, 4), month = read_digits(s + 5, 2), day = read_digits(s + 8, 2);
    int hour = read_digits(s + 11, 2), minute = read_digits(s + 14, 2), second = read_digits(s + 17, 2);
    if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59)
        return -1;
    if (day > month_days[month - 1] + (month == 2 && is_leap_year(year)))
        return -1;
    struct tm tm = {
        .tm_year = year - 1900,
        .tm_mon = month - 1,
        .tm_mday = day,
        .tm_hour = hour,
        .tm_min = minute,
        .tm_sec = second,
    };
    /* Every field is in range, so timegm cannot fail; its -1 is then the
     * genuine 1969-12-31T23:59:59Z. */
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* ---- parser -------------------------------------------------------------- */

enum element {
    EL_PLIST,
    EL_DICT,
    EL_ARRAY,
    EL_KEY,
    EL_STRING,
    EL_INTEGER,
    EL_REAL,
    EL_DATE,
    EL_DATA,
    EL_TRUE,
    EL_FALSE,
    EL_UNKNOWN
};

static const char *const element_names[] = {
    [EL_PLIST] = "plist",     [EL_DICT] = "dict", [EL_ARRAY] = "array", [EL_KEY] = "key",
    [EL_STRING] = "string",   [EL_INTEGER] = "integer", [EL_REAL] = "real", [EL_DATE] = "date",
    [EL_DATA] = "data",       [EL_TRUE] = "true", [EL_FALSE] = "false",
};

static enum element element_from_name(const char *name)
{
    for (int e = 0; e < EL_UNKNOWN; e++)
        if (strcmp(name, element_names[e]) == 0)
            return (enum element)e;
    return EL_UNKNOWN;
}

/* Elements whose character data is their value. */
static int holds_text(enum element e)
{
    return e == EL_KEY || e == EL_STRING || e == EL_INTEGER || e == EL_REAL || e == EL_DATE || e == EL_DATA;
}

struct frame {
    enum element el;
    plist_t *container; /* for EL_DICT and EL_ARRAY */
};

struct parser {
    XML_Parser xp;
    /* <plist>, at most PLIST_MAX_DEPTH containers, and one leaf element. */
    struct frame stack[PLIST_MAX_DEPTH + 2];
    size_t depth;      /* frames in use */
    size_t containers; /* open <dict>/<array> elements */
    size_t nodes;      /* values seen so far */
    plist_t *root;     /* owns every node attached so far */
    char *pending_key; /* a dict's <key> whose value has not been seen yet */
    struct strbuf text; /* character data of the open leaf element; always allocated */
    int failed;
    char err[256];
};

/* Records the first error and stops expat. Expat may still deliver a few
 * callbacks after XML_StopParser, so every handler checks `failed` first. */
static void fail(struct parser *ps, int with_line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct parser *ps, int with_line, const char *fmt, ...)
{
    if (ps->failed)
        return;
    ps->failed = 1;
    size_t off = 0;
    if (with_line) {
        int n = snprintf(ps->err, sizeof ps->err, "line %llu: ",
                         (unsigned long long)XML_GetCurrentLineNumber(ps->xp));
        off = n > 0 && (size_t)n < sizeof ps->err ? (size_t)n : 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + off, sizeof ps->err - off, fmt, ap);
    va_end(ap);
    XML_StopParser(ps->xp, XML_FALSE);
}

/* Copies at most 40 bytes of untrusted text for an error message, keeping it
 * on one printable line. */
static void quote_for_error(const char *s, char out[44])
{
    size_t n = 0;
    for (; s[n] && n < 40; n++)
        out[n] = s[n] >= 0x20 && s[n] < 0x7f ? s[n] : '?';
    if (s[n]) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* Gives `node` to the element on top of the stack (or makes it the root);
 * frees it on failure. */
static void attach(struct parser *ps, plist_t *node)
{
    struct frame *parent = &ps->stack[ps->depth - 1];
    switch (parent->el) {
    case EL_PLIST:
        ps->root = node;
        return;
    case EL_DICT:
        if (dict_append(parent->container, ps->pending_key, node) == 0) {
            ps->pending_key = NULL;
            return;
        }
        break;
    case EL_ARRAY:
        if (array_append(parent->container, node) == 0)
            return;
        break;
    default:
        break; /* unreachable: leaves cannot contain elements */
    }
    plist_free(node);
    fail(ps, 0, "out of memory");
}

static int compare_entry_keys(const void *a, const void *b)
{
    const struct dict_entry *const *x = a, *const *y = b;
    return strcmp((*x)->key, (*y)->key);
}

/* Duplicate keys are refused rather than resolved: two readers that resolve
 * them differently (first wins / last wins) would see different documents.
 * The check runs when the dict closes, so the reported line is that of
 * </dict>; sorting keeps it O(n log n) where pairwise comparison would let
 * one 100000-key dict cost billions of strcmp calls. */
static void check_duplicate_keys(struct parser *ps, const plist_t *dict)
{
    size_t n = dict->u.dict.len;
    if (n < 2)
        return;
    const struct dict_entry **sorted = malloc(n * sizeof *sorted);
    if (!sorted) {
        fail(ps, 0, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = &dict->u.dict.entries[i];
    qsort(sorted, n, sizeof *sorted, compare_entry_keys);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0) {
            char quoted[44];
            quote_for_error(sorted[i]->key, quoted);
            fail(ps, 1, "duplicate key \"%s\" in <dict>", quoted);
            break;
        }
    }
    free(sorted);
}

static void on_start(void *userdata, const XML_Char *name, const XML_Char **attrs)
{
    struct parser *ps = userdata;
    (void)attrs; /* ignored: the DTD gives only <plist> one (version), which changes nothing */
    if (ps->failed)
        return;
    enum element el = element_from_name(name);
    if (ps->depth == 0) {
        if (el != EL_PLIST)
            fail(ps, 1, "root element is <%.40s>, not <plist>", name);
        else
            ps->stack[ps->depth++] = (struct frame){EL_PLIST, NULL};
        return;
    }
    struct frame *parent = &ps->stack[ps->depth - 1];
    if (el == EL_UNKNOWN || el == EL_PLIST) {
        fail(ps, 1, "unexpected element <%.40s>", name);
        return;
    }
    if (parent->el != EL_PLIST && parent->el != EL_DICT && parent->el != EL_ARRAY) {
        fail(ps, 1, "unexpected element <%s> inside <%s>", element_names[el], element_names[parent->el]);
        return;
    }
    if (el == EL_KEY) {
        if (parent->el != EL_DICT)
            fail(ps, 1, "<key> outside a <dict>");
        else if (ps->pending_key)
            fail(ps, 1, "<key> without a value");
        if (ps->failed)
            return;
        ps->stack[ps->depth++] = (struct frame){EL_KEY, NULL};
        strbuf_reset(&ps->text);
        return;
    }

    /* A value. */
    if (parent->el == EL_PLIST && ps->root) {
        fail(ps, 1, "more than one value in <plist>");
        return;
    }
    if (parent->el == EL_DICT && !ps->pending_key) {
        fail(ps, 1, "<%s> in <dict> without a <key>", element_names[el]);
        return;
    }
    if (++ps->nodes > PLIST_MAX_NODES) {
        fail(ps, 0, "more than %d nodes", PLIST_MAX_NODES);
        return;
    }
    plist_t *container = NULL;
    if (el == EL_DICT || el == EL_ARRAY) {
        if (ps->containers == PLIST_MAX_DEPTH) {
            fail(ps, 0, "nesting deeper than %d levels", PLIST_MAX_DEPTH);
            return;
        }
        /* Attached now, so that on any later error freeing the root frees it. */
        container = node_new(el == EL_DICT ? PLIST_DICT : PLIST_ARRAY);
        if (!container) {
            fail(ps, 0, "out of memory");
            return;
        }
        attach(ps, container);
        if (ps->failed)
            return;
        ps->containers++;
    }
    ps->stack[ps->depth++] = (struct frame){el, container};
    strbuf_reset(&ps->text);
}

/* Converts the text of a closed leaf element to its node; NULL after fail(). */
static plist_t *leaf_from_text(struct parser *ps, enum element el)
{
    char *text = ps->text.data;
    plist_t *node = NULL;
    switch (el) {
    case EL_STRING:
        node = plist_new_string(text);
        break;
    case EL_INTEGER: {
        int64_t v;
        if (parse_int64(trim(text), &v)) {
            fail(ps, 1, "invalid integer");
            return NULL;
        }
        node = plist_new_integer(v);
        break;
    }
    case EL_REAL: {
        double v;
        if (parse_real(trim(text), &v)) {
            fail(ps, 1, "invalid real");
            return NULL;
        }
        node = plist_new_real(v);
        break;
    }
    case EL_DATE: {
        int64_t v;
        if (parse_date(trim(text), &v)) {
            fail(ps, 1, "invalid date (want YYYY-MM-DDTHH:MM:SSZ)");
            return NULL;
        }
        node = plist_new_date(v);
        break;
    }
    case EL_DATA: {
        size_t len;
        unsigned char *bytes = util_base64_decode(text, ps->text.len, &len);
        if (!bytes) {
            fail(ps, 1, "invalid base64 in <data>");
            return NULL;
        }
        node = node_new(PLIST_DATA);
        if (node) {
            node->u.data.bytes = bytes; /* non-NULL even for empty data */
            node->u.data.len = len;
        } else {
            free(bytes);
        }
        break;
    }
    case EL_TRUE:
    case EL_FALSE:
        node = plist_new_bool(el == EL_TRUE);
        break;
    default:
        break; /* containers and keys are not leaves */
    }
    if (!node)
        fail(ps, 0, "out of memory");
    return node;
}

static void on_end(void *userdata, const XML_Char *name)
{
    struct parser *ps = userdata;
    (void)name; /* expat guarantees it matches the frame on top */
    if (ps->failed)
        return;
    struct frame closed = ps->stack[--ps->depth];
    switch (closed.el) {
    case EL_PLIST:
        if (!ps->root)
            fail(ps, 1, "<plist> holds no value");
        return;
    case EL_DICT:
        ps->containers--;
        if (ps->pending_key)
            fail(ps, 1, "<key> without a value");
        else
            check_duplicate_keys(ps, closed.container);
        return;
    case EL_ARRAY:
        ps->containers--;
        return;
    case EL_KEY:
        ps->pending_key = strdup(ps->text.data);
        if (!ps->pending_key)
            fail(ps, 0, "out of memory");
        return;
    default: {
        plist_t *node = leaf_from_text(ps, closed.el);
        if (node)
            attach(ps, node);
        return;
    }
    }
}

static void on_text(void *userdata, const XML_Char *s, int len)
{
    struct parser *ps = userdata;
    if (ps->failed || ps->depth == 0)
        return;
    enum element el = ps->stack[ps->depth - 1].el;
    if (holds_text(el)) {
        strbuf_append(&ps->text, s, (size_t)len);
        if (ps->text.oom)
            fail(ps, 0, "out of memory");
        return;
    }
    for (int i = 0; i < len; i++) {
        if (!is_xml_space(s[i])) {
            fail(ps, 1, "unexpected text inside <%s>", element_names[el]);
            return;
        }
    }
}

/* Any entity declaration is refused: plists never need one, and it is how
 * "billion laughs" style amplification is built. */
static void on_entity_decl(void *userdata, const XML_Char *entity_name, int is_parameter_entity,
                           const XML_Char *value, int value_length, const XML_Char *base,
                           const XML_Char *system_id, const XML_Char *public_id, const XML_Char *notation_name)
{
    (void)entity_name, (void)is_parameter_entity, (void)value, (void)value_length, (void)base;
    (void)system_id, (void)public_id, (void)notation_name;
    fail(userdata, 1, "entity declarations are not allowed");
}

/* With an external DTD (Apple's DOCTYPE names one) expat treats a reference
 * to an undeclared entity as "skipped" instead of an error; silently dropping
 * text is worse than refusing the document. */
static void on_skipped_entity(void *userdata, const XML_Char *entity_name, int is_parameter_entity)
{
    (void)is_parameter_entity;
    fail(userdata, 1, "reference to undefined entity &%.40s;", entity_name);
}

static void set_error(char *errbuf, size_t errlen, const char *msg)
{
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", msg);
}

plist_t *plist_parse(const char *buf, size_t len, char *errbuf, size_t errlen)
{
    set_error(errbuf, errlen, "");
    if (len > INT_MAX) { /* XML_Parse takes an int length */
        set_error(errbuf, errlen, "input larger than 2 GiB");
        return NULL;
    }
    if (!buf)
        buf = "";

    struct parser *ps = calloc(1, sizeof *ps);
    if (!ps) {
        set_error(errbuf, errlen, "out of memory");
        return NULL;
    }
    ps->xp = XML_ParserCreate(NULL);
    strbuf_append(&ps->text, "", 0); /* so leaf text is never NULL */
    if (!ps->xp || ps->text.oom) {
        if (ps->xp)
            XML_ParserFree(ps->xp);
        free(ps->text.data);
        free(ps);
        set_error(errbuf, errlen, "out of memory");
        return NULL;
    }
    XML_SetUserData(ps->xp, ps);
    XML_SetElementHandler(ps->xp, on_start, on_end);
    XML_SetCharacterDataHandler(ps->xp, on_text);
    XML_SetEntityDeclHandler(ps->xp, on_entity_decl);
    XML_SetSkippedEntityHandler(ps->xp, on_skipped_entity);
    /* The DOCTYPE's DTD is never fetched: parameter entities (and so the
     * external subset) are not parsed, and with no external entity handler
     * expat loads nothing itself. */
    XML_SetParamEntityParsing(ps->xp, XML_PARAM_ENTITY_PARSING_NEVER);

    if (XML_Parse(ps->xp, buf, (int)len, XML_TRUE) != XML_STATUS_OK && !ps->failed) {
        ps->failed = 1;
        snprintf(ps->err, sizeof ps->err, "%s at line %llu", XML_ErrorString(XML_GetErrorCode(ps->xp)),
                 (unsigned long long)XML_GetCurrentLineNumber(ps->xp));
    }
    if (!ps->failed && !ps->root) { /* cannot happen: </plist> checks it */
        ps->failed = 1;
        snprintf(ps->err, sizeof ps->err, "no value");
    }

    plist_t *result = ps->root;
    if (ps->failed) {
        plist_free(ps->root);
        result = NULL;
        set_error(errbuf, errlen, ps->err);
    }
    XML_ParserFree(ps->xp);
    free(ps->text.data);
    free(ps->pending_key);
    free(ps);
    return result;
}

/* ---- writer -------------------------------------------------------------- */

static void write_indent(struct strbuf *out, size_t level)
{
    static const char tabs[] = "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t";
    while (level > 0) {
        size_t n = level < sizeof tabs - 1 ? level : sizeof tabs - 1;
        strbuf_append(out, tabs, n);
        level -= n;
    }
}

/* Escapes the characters XML gives meaning to. A CR is written as a
 * character reference because a parser would turn a literal one into LF. */
static void write_escaped(struct strbuf *out, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *entity = NULL;
        switch (*s) {
        case '&':
            entity = "&amp;";
            break;
        case '<':
            entity = "&lt;";
            break;
        case '>':
            entity = "&gt;";
            break;
        case '\r':
            entity = "&#13;";
            break;
        default:
            continue;
        }
        strbuf_append(out, run, (size_t)(s - run));
        strbuf_puts(out, entity);
        run = s + 1;
    }
    strbuf_append(out, run, (size_t)(s - run));
}

static void write_tagged(struct strbuf *out, const char *tag, const char *text)
{
    strbuf_puts(out, "<");
    strbuf_puts(out, tag);
    strbuf_puts(out, ">");
    write_escaped(out, text);
    strbuf_puts(out, "</");
    strbuf_puts(out, tag);
    strbuf_puts(out, ">\n");
}

static int write_date(struct strbuf *out, int64_t t)
{
    if (t < DATE_MIN || t > DATE_MAX)
        return -1;
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        return -1;
    char text[80]; /* sized for any int fields, to satisfy -Wformat-truncation */
    snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    write_tagged(out, "date", text);
    return 0;
}

static void write_real(struct strbuf *out, double v)
{
    char text[40];
    if (isnan(v))
        snprintf(text, sizeof text, "nan");
    else if (isinf(v))
        snprintf(text, sizeof text, "%s", v > 0 ? "+infinity" : "-infinity");
    else
        snprintf(text, sizeof text, "%.17g", v); /* 17 digits: exact round trip */
    write_tagged(out, "real", text);
}

/* Writes a scalar or an empty container on one line. A non-empty container
 * gets only its opening tag; returns 1 so the caller walks its children.
 * -1 if the node cannot be written. */
static int write_node_start(struct strbuf *out, const plist_t *p, size_t level)
{
    write_indent(out, level);
    switch (p->type) {
    case PLIST_DICT:
        strbuf_puts(out, p->u.dict.len ? "<dict>\n" : "<dict/>\n");
        return p->u.dict.len ? 1 : 0;
    case PLIST_ARRAY:
        strbuf_puts(out, p->u.array.len ? "<array>\n" : "<array/>\n");
        return p->u.array.len ? 1 : 0;
    case PLIST_STRING:
        write_tagged(out, "string", p->u.string);
        return 0;
    case PLIST_INTEGER: {
        char text[24];
        snprintf(text, sizeof text, "%" PRId64, p->u.integer);
        write_tagged(out, "integer", text);
        return 0;
    }
    case PLIST_REAL:
        write_real(out, p->u.real);
        return 0;
    case PLIST_BOOL:
        strbuf_puts(out, p->u.boolean ? "<true/>\n" : "<false/>\n");
        return 0;
    case PLIST_DATE:
        return write_date(out, p->u.integer);
    case PLIST_DATA: {
        char *b64 = util_base64_encode(p->u.data.bytes, p->u.data.len);
        if (!b64)
            return -1;
        write_tagged(out, "data", b64);
        free(b64);
        return 0;
    }
    }
    return -1;
}

/* A container being written and the index of its next child. */
struct write_frame {
    const plist_t *node;
    size_t next;
};

char *plist_to_xml(const plist_t *p, size_t *len)
{
    if (!p)
        return NULL;
    struct strbuf out = {0};
    strbuf_puts(&out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" "
                      "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
                      "<plist version=\"1.0\">\n");

    /* Containers being written, outermost first; depth is also the
     * indentation of their children. */
    struct write_frame *stack = NULL;
    size_t depth = 0, cap = 0;
    int failed = 0;
    const plist_t *child = p; /* node to write next, if any */
    for (;;) {
        if (child) {
            int opened = write_node_start(&out, child, depth);
            if (opened < 0) {
                failed = 1;
                break;
            }
            if (opened) {
                void *grown = stack;
                if (grow_for_one_more(&grown, &cap, depth, sizeof *stack)) {
                    failed = 1;
                    break;
                }
                stack = grown;
                stack[depth++] = (struct write_frame){child, 0};
            }
            child = NULL;
        }
        if (depth == 0)
            break;
        struct write_frame *top = &stack[depth - 1];
        const plist_t *node = top->node;
        if (node->type == PLIST_DICT && top->next < node->u.dict.len) {
            const struct dict_entry *e = &node->u.dict.entries[top->next++];
            write_indent(&out, depth);
            write_tagged(&out, "key", e->key);
            child = e->value;
        } else if (node->type == PLIST_ARRAY && top->next < node->u.array.len) {
            child = node->u.array.items[top->next++];
        } else {
            depth--;
            write_indent(&out, depth);
            strbuf_puts(&out, node->type == PLIST_DICT ? "</dict>\n" : "</array>\n");
        }
    }
    free(stack);
    strbuf_puts(&out, "</plist>\n");
    if (failed || out.oom) {
        free(out.data);
        return NULL;
    }
    if (len)
        *len = out.len;
    return out.data;
}
