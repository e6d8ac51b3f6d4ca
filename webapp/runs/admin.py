from django.contrib import admin

from webapp.runs.models import Checkpoint, Run, RunEvent


class CheckpointInline(admin.TabularInline):
    model = Checkpoint
    extra = 0
    readonly_fields = ["step", "kind", "path", "size", "sha256", "created_at"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "method", "status", "step", "total_steps", "best_miou", "worker_host", "created_at"]
    list_filter = ["status", "method"]
    search_fields = ["name", "source_dataset", "target_dataset"]
    # Status changes go through services.lifecycle.run_transition, never through the admin.
    readonly_fields = ["status", "claim_token", "heartbeat_at", "attempts", "step", "config", "output_dir"]
    inlines = [CheckpointInline]


@admin.register(RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ["run", "created_at", "level", "message"]
    list_filter = ["level"]
