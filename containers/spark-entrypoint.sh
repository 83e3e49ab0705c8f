#!/bin/bash
# Entry point of the spark image (containers/Dockerfile, target spark).
#
#   (no argument)   python -m mining: the job starts Spark itself on SPARK_MASTER (local[*]
#                   by default), like the mining image with MINING_ENGINE=spark.
#   driver ARGS     the Spark driver pod of a SparkApplication: spark-submit in client mode
#                   inside the pod, with the arguments Spark on Kubernetes gives it (the
#                   properties file, the main class, the application file).
#   executor        a Spark executor pod: Spark's Kubernetes executor backend, configured
#                   through the environment Spark on Kubernetes sets for it.
#
# Spark's own images carry an entry point for the same two roles; this one follows the same
# contract for an image whose Spark comes from the pyspark wheel (SPARK_HOME in the venv).
set -euo pipefail

case "${1:-}" in
driver)
    shift
    exec "$SPARK_HOME/bin/spark-submit" \
        --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
        --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
        --deploy-mode client \
        "$@"
    ;;
executor)
    # Spark passes the executor's JVM options as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...
    java_options=()
    while IFS= read -r name; do
        java_options+=("${!name}")
    done < <(compgen -e | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n)
    exec "$JAVA_HOME/bin/java" \
        "${java_options[@]}" \
        "-Xms${SPARK_EXECUTOR_MEMORY}" \
        "-Xmx${SPARK_EXECUTOR_MEMORY}" \
        -cp "${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}$SPARK_HOME/jars/*" \
        org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
        --driver-url "$SPARK_DRIVER_URL" \
        --executor-id "$SPARK_EXECUTOR_ID" \
        --cores "$SPARK_EXECUTOR_CORES" \
        --app-id "$SPARK_APPLICATION_ID" \
        --hostname "$SPARK_EXECUTOR_POD_IP" \
        --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" \
        --podName "$SPARK_EXECUTOR_POD_NAME"
    ;;
*)
    exec python -m mining "$@"
    ;;
esac
