/* JSON values shared by the admin API handlers. */
#include "api_json.h"

#include <time.h>

json_t *api_json_time(int64_t unix_seconds)
{
    if (unix_seconds <= 0)
        return json_null();
    time_t tt = (time_t)unix_seconds;
    struct tm tm;
    char buf[32];
    if (!gmtime_r(&tt, &tm) || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return json_null();
    return json_string(buf);
}

json_t *api_json_string(const char *s)
{
    return s ? json_string(s) : json_null();
}
