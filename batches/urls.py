from __future__ import annotations

from django.urls import path

from batches import analysis_views, streams, views

app_name = "batches"
urlpatterns = [
    path("", views.batch_list, name="list"),
    path("new/", views.new_batch, name="new"),
    path("events/", streams.project_events, name="project_events"),
    path("queue/<str:device_name>/", views.device_queue, name="queue"),
    path("<uuid:batch_id>/add-jobs/", views.add_jobs, name="add_jobs"),
    path("export.zip", analysis_views.export_batches, name="export"),
    path("price/", analysis_views.price, name="price"),
    path("<uuid:batch_id>/", views.batch_detail, name="detail"),
    path("<uuid:batch_id>/events/", streams.batch_events, name="events"),
    path("<uuid:batch_id>/cancel/", views.cancel_batch, name="cancel"),
    path("<uuid:batch_id>/close/", views.close_batch, name="close"),
    path("<uuid:batch_id>/cancel-jobs/", views.cancel_jobs, name="cancel_jobs"),
    path("<uuid:batch_id>/rebatch/", views.rebatch, name="rebatch"),
    path("<uuid:batch_id>/results.zip", views.download_results, name="download"),
    path("<uuid:batch_id>/jobs/<uuid:job_id>/retry/", views.retry_job, name="retry"),
    path("<uuid:batch_id>/sweep/", analysis_views.sweep, name="sweep"),
    path("<uuid:batch_id>/export.zip", analysis_views.export_jobs, name="export_jobs"),
    path("<uuid:batch_id>/sweep.csv", analysis_views.sweep_csv, name="sweep_csv"),
]
