# Chainflow image for the distributed shape: `chainflow api` and (with the engine) `chainflow worker`.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY src ./src
RUN pip install --no-cache-dir --no-deps . && useradd --create-home chainflow
USER chainflow
ENV CHAINFLOW_LOG_FORMAT=json CHAINFLOW_API_HOST=0.0.0.0
EXPOSE 8000
ENTRYPOINT ["chainflow"]
CMD ["api"]
