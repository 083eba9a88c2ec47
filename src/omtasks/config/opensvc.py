"""What an OpenSVC service file may hold that om accepts without managing it.

OpenSVC v2/v3 files carry keywords for orchestration, provisioning and
resource drivers om does not run.  Refusing them would make every existing
file invalid, so they load with a one-line warning each; a keyword OpenSVC
itself would refuse stays an error.  docs/configuration.md lists these tables.
"""

from __future__ import annotations

#: [DEFAULT] keywords OpenSVC defines and om does not manage
DEFAULT_IGNORED = frozenset(
    """
    id orchestrate placement priority monitor_action pre_monitor_action monitor_schedule rollback env app comment
    flex_min flex_min_nodes flex_max flex_max_nodes flex_target flex_primary drp_flex_primary flex_cpu_low_threshold
    flex_cpu_high_threshold scale scaler_slave cluster_type access aws aws_profile bwlimit children parents slaves
    container_data_dir create_pg drpnode encapnodes hard_affinity hard_anti_affinity soft_affinity
    soft_anti_affinity lock_timeout mode no_preempt_abort pool postsnap_trigger presnap_trigger prkey
    registry_creds scsireserv show_disabled size stat_timeout stonith sync_interval sync_max_delay
    start_timeout stop_timeout provision_timeout unprovision_timeout kind namespace stonith pg_cpus pg_mems
    pg_cpu_shares pg_cpu_quota pg_mem_oom_control pg_mem_limit pg_vmem_limit pg_mem_swappiness pg_blkio_weight
    """.split()
)
DEFAULT_IGNORED_PREFIXES = ("docker_", "dockerd_", "pg_")

#: keywords of any resource section (OpenSVC's generic resource keywords) om does not manage
RESOURCE_IGNORED = frozenset(
    """
    type info comment status_log restart restart_delay monitor shared standby always_on encap provision
    unprovision configs_environment secrets_environment start_timeout stop_timeout check_timeout
    info_timeout kill pg_cpus pg_mems pg_cpu_shares pg_cpu_quota pg_mem_oom_control pg_mem_limit
    pg_vmem_limit pg_mem_swappiness pg_blkio_weight
    """.split()
)
RESOURCE_IGNORED_PREFIXES = ("pre_", "post_", "blocking_pre_", "blocking_post_", "limit_")

#: container keywords a container task (type docker|podman|oci) accepts but om does not pass on
CONTAINER_TASK_IGNORED = frozenset(
    "detach devices hostname image_pull_policy ipcns utsns userns pull_timeout registry_creds".split()
)

#: app keywords of OpenSVC's forking/simple drivers: `script` is used, these are not
APP_IGNORED = frozenset(["info", "status_log", "kill", "group", "cwd", "environment", "umask", "retcodes"])

#: resource kinds OpenSVC runs and om does not (their sections load with a warning)
IGNORED_FAMILIES = frozenset(
    "fs disk ip volume share expose container subset hb stonith certificate route vhost hashpolicy data".split()
)

#: task types: host runs the command on the host, the others as a container run
TASK_TYPES = ("host", "docker", "podman", "oci")
#: sync types om runs (rsync); any other sync type is accepted, warned about and does nothing
SYNC_TYPES = ("rsync",)
#: `nodes` values that mean every node of the cluster (`{dnsnodes}`: OpenSVC's DNS nodes are cluster nodes)
CLUSTER_WIDE = ("*", "{clusternodes}", "{dnsnodes}")
#: OpenSVC's internal config sync resource: om has nothing to do for it
INTERNAL_SYNC = "sync#i0"


def ignored_keyword(family: str, keyword: str) -> bool:
    """Whether `keyword` of a `family` section (DEFAULT, task, app, sync) is OpenSVC's and ignored by om."""
    if family == "DEFAULT":
        return keyword in DEFAULT_IGNORED or keyword.startswith(DEFAULT_IGNORED_PREFIXES)
    if family == "app" and keyword in APP_IGNORED:
        return True
    return keyword in RESOURCE_IGNORED or keyword.startswith(RESOURCE_IGNORED_PREFIXES)


_cluster_nodes: list[str] = []


def set_cluster_nodes(names: list[str]) -> None:
    """Record the node names of the shared database, read when a file says `nodes = *` or `{clusternodes}`.

    Set by whoever counts the nodes before loading services (runner.catalog.node_count), so
    no loader signature changes; until then the cluster is this node alone.
    """
    _cluster_nodes[:] = sorted(names)


def cluster_nodes(nodename: str) -> list[str]:
    """Every node of the cluster: the registered ones (this node included), or this node alone."""
    names = list(_cluster_nodes)
    if nodename not in names:
        names.append(nodename)
    return names
