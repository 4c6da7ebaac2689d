/* The scope of protocol entries a subscription grants, shared by the files of the download module. */
#ifndef ZNP_DOWNLOAD_INTERNAL_H
#define ZNP_DOWNLOAD_INTERNAL_H

/*
 * The entries subscription `sub_id` (an SQL expression such as "$1") grants,
 * as the FROM and WHERE of a query with the aliases s (subscription),
 * b (binding), n (node) and e (entry). The live plan mapping decides, as in
 * the view binding_eligible_users. The caller has already checked that the
 * subscription itself is effective.
 * Served: active entries of active bindings whose health is unknown (0),
 * healthy (1) or degraded (2), on nodes that are neither deleted, in
 * maintenance (3) nor disabled (4). A binding the kernel reports unhealthy
 * (3) or offline (4) cannot carry traffic, so it is left out. The node
 * status "offline" (2) is not a reason. It only means that the control
 * endpoint did not respond, and it is also the status of a new node that was
 * never polled.
 */
#define DOWNLOAD_ENTRY_SCOPE(sub_id)                                                                           \
    " FROM subscriptions s"                                                                                    \
    " JOIN plan_bindings pb ON pb.plan_id = s.plan_id"                                                         \
    " JOIN protocol_bindings b ON b.id = pb.binding_id"                                                        \
    " JOIN nodes n ON n.id = b.node_id"                                                                        \
    " JOIN protocol_entries e ON e.binding_id = b.id"                                                          \
    " WHERE s.id = " sub_id " AND b.status = 1 AND b.health_status IN (0, 1, 2) AND e.status = 1"              \
    " AND n.deleted_at IS NULL AND n.status NOT IN (3, 4)"

/* The order of entries in every file and in the template context. */
#define DOWNLOAD_ENTRY_ORDER " ORDER BY e.sort_order, b.id, e.id"

#endif
