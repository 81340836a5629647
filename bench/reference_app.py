"""The reference app: seed 001's /predict and /batch_predict written the straightforward way.

FastAPI parses the body into a pydantic object per record, the records become a DataFrame, and the same model
from the BentoML store (training.store.load_model) answers with predict_proba. No batching, no metrics, no log.

    REFERENCE_MODEL=purchase_gbm:latest python -m uvicorn bench.reference_app:app --host 127.0.0.1 --port 3001
"""

from __future__ import annotations

import os

import pandas as pd
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from training.store import load_model


class PredictRequest(BaseModel):
    student_country: str = Field(min_length=1)
    days_on_platform: int = Field(ge=0)
    minutes_watched: float = Field(ge=0)
    courses_started: int = Field(ge=0)
    practice_exams_started: int = Field(ge=0)
    practice_exams_passed: int = Field(ge=0)
    minutes_spent_on_exams: float = Field(ge=0)


class BatchPredictRequest(BaseModel):
    records: list[PredictRequest] = Field(min_length=1)


class Prediction(BaseModel):
    predicted_purchase_probability: float
    predicted_purchase: int


class BatchPredictResponse(BaseModel):
    predictions: list[Prediction]


app = FastAPI(title="reference /batch_predict")
model = load_model(os.environ.get("REFERENCE_MODEL", "purchase_gbm:latest"))


@app.get("/readyz")
def ready() -> dict:
    return {"ready": True}


@app.post("/predict", response_model=Prediction)
def predict(record: PredictRequest) -> Prediction:
    if record.practice_exams_passed > record.practice_exams_started:
        raise HTTPException(422, "practice_exams_passed cannot exceed practice_exams_started.")
    p = float(model.predict_proba(pd.DataFrame([record.model_dump()]))[0])
    return Prediction(predicted_purchase_probability=p, predicted_purchase=int(p >= model.threshold))


@app.post("/batch_predict", response_model=BatchPredictResponse)
def batch_predict(request: BatchPredictRequest) -> BatchPredictResponse:
    for record in request.records:
        if record.practice_exams_passed > record.practice_exams_started:
            raise HTTPException(422, "practice_exams_passed cannot exceed practice_exams_started.")
    frame = pd.DataFrame([record.model_dump() for record in request.records])
    proba = model.predict_proba(frame)
    return BatchPredictResponse(
        predictions=[
            Prediction(predicted_purchase_probability=float(p), predicted_purchase=int(p >= model.threshold))
            for p in proba
        ]
    )
