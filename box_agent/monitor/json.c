/* A JSON scanner: enough to validate a message and find a top-level field. */
#include "monitor.h"


static const char *ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_value(const char *p, const char *e, int depth);

static int hex4(const char *p, const char *e, unsigned *out) {
    unsigned v = 0;
    if (e - p < 4)
        return 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return 0;
    }
    *out = v;
    return 1;
}

/* Python's json is strict about escapes: only these, and \u with four hex digits. */
static const char *skip_string(const char *p, const char *e) {
    if (p >= e || *p != '"')
        return NULL;
    for (p++; p < e; p++) {
        if (*p == '\\') {
            unsigned u;
            if (++p >= e)
                return NULL;
            if (*p == 'u') {
                if (!hex4(p + 1, e, &u))
                    return NULL;
                p += 4;
            } else if (!strchr("\"\\/bfnrt", *p) || !*p) {
                return NULL;
            }
            continue;
        }
        if (*p == '"')
            return p + 1;
        if ((unsigned char)*p < 0x20)
            return NULL;
    }
    return NULL;
}

/* JSON's number grammar. Python refuses an integer literal of more than 4300 digits. */
static const char *skip_number(const char *p, const char *e, int *is_int) {
    const char *digits;
    *is_int = 1;
    if (p < e && *p == '-')
        p++;
    digits = p;
    if (p < e && *p == '0')
        p++;
    else if (p < e && *p >= '1' && *p <= '9')
        while (p < e && isdigit((unsigned char)*p))
            p++;
    else
        return NULL;
    if (p - digits > 4300)
        return NULL;
    if (p < e && *p == '.' && p + 1 < e && isdigit((unsigned char)p[1])) {
        *is_int = 0;
        for (p++; p < e && isdigit((unsigned char)*p); p++) {
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        if (q < e && (*q == '+' || *q == '-'))
            q++;
        if (q < e && isdigit((unsigned char)*q)) {
            *is_int = 0;
            for (p = q; p < e && isdigit((unsigned char)*p); p++) {
            }
        }
    }
    return p;
}

static const char *skip_literal(const char *p, const char *e, const char *word) {
    size_t n = strlen(word);
    return (size_t)(e - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

static const char *skip_value(const char *p, const char *e, int depth) {
    p = ws(p, e);
    if (p >= e || depth > 64)
        return NULL;
    if (*p == '"')
        return skip_string(p, e);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int object = *p == '{';
        p = ws(p + 1, e);
        if (p < e && *p == close)
            return p + 1;
        for (;;) {
            if (object) {
                p = skip_string(ws(p, e), e);
                if (!p)
                    return NULL;
                p = ws(p, e);
                if (p >= e || *p != ':')
                    return NULL;
                p++;
            }
            p = skip_value(p, e, depth + 1);
            if (!p)
                return NULL;
            p = ws(p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            return p < e && *p == close ? p + 1 : NULL;
        }
    }
    if (*p == 't')
        return skip_literal(p, e, "true");
    if (*p == 'f')
        return skip_literal(p, e, "false");
    if (*p == 'n')
        return skip_literal(p, e, "null");
    if (*p == 'N')
        return skip_literal(p, e, "NaN");
    if (*p == 'I')
        return skip_literal(p, e, "Infinity");
    if (*p == '-' && e - p > 1 && p[1] == 'I')
        return skip_literal(p, e, "-Infinity");
    int is_int;
    return skip_number(p, e, &is_int);
}

/* A whole message: one JSON object and whitespace. Returns its span without the whitespace. */
int json_object(const char *p, const char *e, const char **vs, const char **ve) {
    p = ws(p, e);
    if (p >= e || *p != '{')
        return 0;
    const char *end = skip_value(p, e, 0);
    if (!end || ws(end, e) != e)
        return 0;
    *vs = p;
    *ve = end;
    return 1;
}

/* Is the valid JSON string literal [s, se) this text, once its escapes are decoded (as
 * Python reads `"o\u0070"` as "op")? */
static int string_is(const char *s, const char *se, const char *text) {
    size_t n = strlen(text);
    if ((size_t)(se - s) == n + 2 && memcmp(s + 1, text, n) == 0)
        return 1;
    char decoded[128]; /* no escaped form of a key or tag we look for is longer */
    if (se - s > (long)sizeof decoded || !memchr(s, '\\', se - s))
        return 0;
    return json_string(s, se, decoded) == n && memcmp(decoded, text, n) == 0;
}

/* The raw value of a top-level key of a valid object; 0 when it has none. */
int json_field(const char *p, const char *e, const char *key, const char **vs,
                      const char **ve) {
    int found = 0;
    p = ws(p, e) + 1;
    for (;;) {
        p = ws(p, e);
        if (p >= e || *p != '"')
            return found;
        const char *kend = skip_string(p, e);
        int match = string_is(p, kend, key);
        p = ws(kend, e) + 1; /* past ':' */
        p = ws(p, e);
        const char *vend = skip_value(p, e, 0);
        if (match) { /* the last of a repeated key wins, as in Python's json */
            *vs = p;
            *ve = vend;
            found = 1;
        }
        p = ws(vend, e);
        if (p >= e || *p != ',')
            return found;
        p++;
    }
}

int field_is(const char *p, const char *e, const char *key, const char *raw) {
    const char *vs, *ve;
    size_t n = strlen(raw);
    if (!json_field(p, e, key, &vs, &ve))
        return 0;
    if (*raw == '"' && *vs == '"') { /* a string: compared as text, escapes decoded */
        char text[64];
        snprintf(text, sizeof text, "%.*s", (int)(n - 2), raw + 1);
        return string_is(vs, ve, text);
    }
    return (size_t)(ve - vs) == n && memcmp(vs, raw, n) == 0;
}

int field_ll(const char *p, const char *e, const char *key, long long *out) {
    const char *vs, *ve;
    char num[32];
    if (!json_field(p, e, key, &vs, &ve) || ve - vs >= (long)sizeof num)
        return 0;
    memcpy(num, vs, ve - vs);
    num[ve - vs] = 0;
    char *stop;
    errno = 0;
    long long v = strtoll(num, &stop, 10);
    if (errno || stop == num || (*stop && *stop != '.' && *stop != 'e' && *stop != 'E'))
        return 0;
    *out = v;
    return 1;
}

char *dup_span(const char *s, const char *e) {
    char *copy = malloc(e - s + 1);
    if (copy) {
        memcpy(copy, s, e - s);
        copy[e - s] = 0;
    }
    return copy;
}

/* A JSON string literal of text, into out (size at least 6 * len + 3). */
void json_quote(char *out, const char *text) {
    char *o = out;
    *o++ = '"';
    for (const unsigned char *t = (const unsigned char *)text; *t; t++) {
        if (*t == '"' || *t == '\\') {
            *o++ = '\\';
            *o++ = *t;
        } else if (*t < 0x20) {
            o += sprintf(o, "\\u%04x", *t);
        } else {
            *o++ = *t;
        }
    }
    *o++ = '"';
    *o = 0;
}

/* UTF-8 as Python's json.loads decodes a message's bytes: strict (no overlong forms, nothing
 * past U+10FFFF) but for surrogates, which it lets through ('surrogatepass'). */
int utf8_valid(const char *p, const char *e) {
    const unsigned char *s = (const unsigned char *)p, *end = (const unsigned char *)e;
    while (s < end) {
        unsigned c = *s;
        int n;
        unsigned min;
        if (c < 0x80) {
            s++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, min = 0x80, c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, min = 0x800, c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        if (end - s <= n)
            return 0;
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            c = c << 6 | (s[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff)
            return 0;
        s += n + 1;
    }
    return 1;
}

static char *put_utf8(char *o, unsigned c) {
    if (c < 0x80) {
        *o++ = (char)c;
    } else if (c < 0x800) {
        *o++ = (char)(0xc0 | c >> 6);
        *o++ = (char)(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        *o++ = (char)(0xe0 | c >> 12);
        *o++ = (char)(0x80 | (c >> 6 & 0x3f));
        *o++ = (char)(0x80 | (c & 0x3f));
    } else {
        *o++ = (char)(0xf0 | c >> 18);
        *o++ = (char)(0x80 | (c >> 12 & 0x3f));
        *o++ = (char)(0x80 | (c >> 6 & 0x3f));
        *o++ = (char)(0x80 | (c & 0x3f));
    }
    return o;
}

/* The text of a valid JSON string literal [vs, ve) as UTF-8, into out (at least ve - vs
 * bytes: no escape decodes longer than itself). A lone surrogate becomes '?', as Python's
 * text.encode("utf-8", "replace") writes it. Returns the length. */
size_t json_string(const char *vs, const char *ve, char *out) {
    char *o = out;
    const char *p = vs + 1, *e = ve - 1;
    while (p < e) {
        if ((unsigned char)p[0] == 0xed && e - p >= 3 && (unsigned char)p[1] >= 0xa0) {
            *o++ = '?'; /* a surrogate written raw: lone, whatever follows */
            p += 3;
            continue;
        }
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char c = p[1];
        p += 2;
        if (c != 'u') {
            *o++ = c == 'b' ? '\b' : c == 'f' ? '\f' : c == 'n' ? '\n' : c == 'r' ? '\r'
                 : c == 't' ? '\t' : c;
            continue;
        }
        unsigned u, low;
        hex4(p, e, &u);
        p += 4;
        if (u >= 0xd800 && u <= 0xdbff && e - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
            hex4(p + 2, e, &low) && low >= 0xdc00 && low <= 0xdfff) {
            u = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00);
            p += 6;
        } else if (u >= 0xd800 && u <= 0xdfff) {
            u = '?';
        }
        o = put_utf8(o, u);
    }
    return (size_t)(o - out);
}

/* Does the raw JSON value [vs, ve) have this type (codec.py's rules)? */
static int has_type(const char *vs, const char *ve, enum json_type type) {
    int is_int;
    size_t n = (size_t)(ve - vs);
    if ((type & J_NULL) && n == 4 && memcmp(vs, "null", 4) == 0)
        return 1;
    if ((type & J_STR) && *vs == '"')
        return 1;
    if ((type & J_BOOL) && ((n == 4 && memcmp(vs, "true", 4) == 0) ||
                            (n == 5 && memcmp(vs, "false", 5) == 0)))
        return 1;
    if ((type & J_OBJ) && *vs == '{')
        return 1;
    if ((type & J_LIST) && *vs == '[')
        return 1;
    if (*vs == '-' || isdigit((unsigned char)*vs)) {
        if (skip_number(vs, ve, &is_int) != ve)
            return 0;
        if (!is_int || (type & J_INT))
            return (type & (is_int ? J_INT : J_NUM)) != 0;
        if (!(type & J_NUM))
            return 0;
        /* float() of an integer past the largest double overflows, and is refused */
        char *copy = dup_span(vs, ve);
        double v = copy ? strtod(copy, NULL) : 0;
        free(copy);
        return v != HUGE_VAL && v != -HUGE_VAL;
    }
    if ((type & J_NUM) && ((n == 8 && memcmp(vs, "Infinity", 8) == 0) ||
                           (n == 9 && memcmp(vs, "-Infinity", 9) == 0)))
        return 1; /* NaN is refused */
    return 0;
}

/* A valid object that has every required field and every present field of its type. */
int fields_ok(const char *p, const char *e, const struct field_spec *spec) {
    const char *vs, *ve;
    for (; spec->key; spec++) {
        if (!json_field(p, e, spec->key, &vs, &ve)) {
            if (spec->required)
                return 0;
        } else if (!has_type(vs, ve, spec->type)) {
            return 0;
        }
    }
    return 1;
}
