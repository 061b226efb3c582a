/* Property list → JSON conversion. */
#include "plist_json.h"

#include <stdlib.h>
#include <time.h>

#include "util.h"

json_t *plist_to_json(const plist_t *p)
{
    switch (plist_type(p)) {
    case PLIST_DICT: {
        json_t *o = json_object();
        for (size_t i = 0; o && i < plist_dict_size(p); i++) {
            json_t *v = plist_to_json(plist_dict_value_at(p, i));
            if (!v || json_object_set_new(o, plist_dict_key_at(p, i), v) != 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    case PLIST_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; a && i < plist_array_size(p); i++) {
            json_t *v = plist_to_json(plist_array_get(p, i));
            if (!v || json_array_append_new(a, v) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case PLIST_STRING: return json_string(plist_string(p));
    case PLIST_INTEGER: return json_integer((json_int_t)plist_integer(p));
    case PLIST_REAL: return json_real(plist_real(p));
    case PLIST_BOOL: return json_boolean(plist_bool(p));
    case PLIST_DATE: {
        time_t t = (time_t)plist_date(p);
        struct tm tm;
        char buf[32];
        if (!gmtime_r(&t, &tm) || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
            return json_null();
        return json_string(buf);
    }
    case PLIST_DATA: {
        size_t n = 0;
        const unsigned char *d = plist_data(p, &n);
        char *b64 = util_base64_encode(d ? d : (const unsigned char *)"", n);
        json_t *s = b64 ? json_string(b64) : NULL;
        free(b64);
        return s;
    }
    }
    return json_null();
}
