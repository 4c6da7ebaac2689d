#include "core/warm.h"

#define WARM_MAX 8

typedef struct warm_slot {
    const znp_operation_t *op;
    znp_warm_fn fn;
    znp_warm_hint_fn hint;
} warm_slot_t;

/* written before the threads start, read-only afterwards */
static warm_slot_t slots[WARM_MAX];
static size_t slot_count;

int znp_warm_register(const char *operation_id, znp_warm_fn fn, znp_warm_hint_fn hint)
{
    const znp_operation_t *op = znp_operation_find(operation_id);

    if (op == NULL)
        return ZNP_E_NOT_FOUND;
    for (size_t i = 0; i < slot_count; i++) {
        if (slots[i].op == op) {
            slots[i].fn = fn;
            slots[i].hint = hint;
            return 0;
        }
    }
    if (slot_count == WARM_MAX)
        return ZNP_E_INTERNAL;
    slots[slot_count].op = op;
    slots[slot_count].fn = fn;
    slots[slot_count].hint = hint;
    slot_count++;
    return 0;
}

znp_warm_fn znp_warm_find(const znp_operation_t *op)
{
    for (size_t i = 0; i < slot_count; i++) {
        if (slots[i].op == op)
            return slots[i].fn;
    }
    return NULL;
}

znp_warm_hint_fn znp_warm_find_hint(const znp_operation_t *op)
{
    for (size_t i = 0; i < slot_count; i++) {
        if (slots[i].op == op)
            return slots[i].hint;
    }
    return NULL;
}
