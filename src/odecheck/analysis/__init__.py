"""The analysis layer: estimators and every decision rule (estimators.decisions), checkpoint reading, planted
paths with known regularity. Imports the engine and the core."""
